package kv

import "testing"

func TestMemoryLimit(t *testing.T) {
	if got := Small.MemoryLimit(); got < 32<<20 || got > 64<<20 {
		t.Errorf("Small.MemoryLimit() = %d, want a limit under the edge's 64 MiB target", got)
	}
	if got := Server.MemoryLimit(); got != 0 {
		t.Errorf("Server.MemoryLimit() = %d, want none", got)
	}
}
