package store

import (
	"bytes"
	"testing"

	"linli/shared/event"
	"linli/shared/kv"
)

// A group commit builds its event keys in shared blocks: every event of a
// commit larger than a block must still be stored under its own key, as
// EventKey names it, and read back whole.
func TestBatchEventKeysAcrossBlocks(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	const n = 5000 // ~30-byte keys: a little over two blocks
	devices := []string{"gw-b3", "kiosk-building-with-a-longer-id"}
	b := s.NewBatch()
	for seq := uint64(1); seq <= n; seq++ {
		for _, d := range devices {
			ev, err := event.NewEvent(d, seq, 0, &event.Vote{Report: "k1.1", Resident: "R1"})
			if err != nil {
				t.Fatal(err)
			}
			stored := ev
			stored.Device = ""
			enc, err := stored.Encode()
			if err != nil {
				t.Fatal(err)
			}
			b.PutEvent("s1", &ev, enc)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		evs, err := s.Events("s1", d, 0, 2*n)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != n {
			t.Fatalf("%s: %d events read back, want %d", d, len(evs), n)
		}
		for i, ev := range evs {
			if ev.Seq != uint64(i+1) || ev.Device != d {
				t.Fatalf("%s: event %d is %s.%d", d, i, ev.Device, ev.Seq)
			}
		}
	}
	// The key layout is the one older hubs wrote.
	want := kv.Key(prefixEvent, []byte("s1/gw-b3/"), kv.U64(4242))
	if got := EventKey("s1", "gw-b3", 4242); !bytes.Equal(got, want) {
		t.Fatalf("EventKey = %q, want %q", got, want)
	}
}
