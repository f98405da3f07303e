package kv

import "testing"

func TestMemoryLimit(t *testing.T) {
	if got := Small.MemoryLimit(); got < 32<<20 || got > 64<<20 {
		t.Errorf("Small.MemoryLimit() = %d, want a limit under the edge's 64 MiB target", got)
	}
	// The hub's limit bounds bursts only: above its memtables' arenas
	// (three of 64 MiB, allocated whole) and its peaks under load.
	if got := Server.MemoryLimit(); got < 384<<20 || got > 1<<30 {
		t.Errorf("Server.MemoryLimit() = %d, want 384 MiB to 1 GiB", got)
	}
}
