package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/shared/merge"
	"linli/shared/wire"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A hub with --snapshot-every writes the merged state's snapshot when it
// stops cleanly, and its next start reads it, folding only the facts
// stored after it: the same reports as before.
func TestHubStartsFromItsSnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() (*Hub, *syncBuf) {
		t.Helper()
		var logs syncBuf
		cfg := hubConfig(dir)
		cfg.SnapshotEvery = time.Hour
		h, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		waitSubscribed(t, h)
		return h, &logs
	}
	reports := func(h *Hub) (out []merge.Report) {
		h.state.Read(func(m *merge.State) { out = m.Reports("s1") })
		return out
	}
	h, _ := start()
	f := dialEdge(t, h.MQTTAddr(), "s1", "kiosk-s")
	f.publish(wire.Up{Hello: &wire.Hello{Role: "kiosk", LastSeq: 20}})
	f.waitAck(0, 1)
	f.publish(f.batch(1, 20))
	f.waitAck(20, 2)
	f.c.Disconnect(100)
	before := reports(h)
	if len(before) != 20 {
		t.Fatalf("%d reports, want 20", len(before))
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	h, logs := start()
	defer h.Stop()
	if !strings.Contains(logs.String(), "snapshot=true") || !strings.Contains(logs.String(), "facts=0") {
		t.Fatalf("the start did not read the snapshot: %s", logs)
	}
	if after := reports(h); len(after) != len(before) {
		t.Fatalf("%d reports after the restart, want %d", len(after), len(before))
	}
	for i, r := range reports(h) {
		if r.ID != before[i].ID || r.Title != before[i].Title || r.Status != before[i].Status {
			t.Fatalf("report %d after the restart %+v, want %+v", i, r, before[i])
		}
	}
}
