package ingest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

// While the committer takes nothing, the decoders stop once the batches
// waiting for it hold a group of the largest size: the queue is bounded in
// events, not batches, so a thousand edges' small batches make groups as
// large as one edge's big ones, and big batches cannot pile up more.
func TestDecodedQueueHoldsOneGroup(t *testing.T) {
	for _, c := range []struct {
		name       string
		perBatch   int
		wantQueued int // batches decoded and waiting; the decoder holds one more
	}{
		{"small batches", 30, 3}, // a fourth would make 120 events of a group of 100
		{"big batches", 250, 1},  // a batch larger than a group takes all the room
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := store.Open(t.TempDir(), kv.Small, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			in, err := New(Options{Store: BadgerStore{Store: st}, AllowUnsigned: true, MaxGroup: 100,
				Clock: hlc.NewClock(nil, 0)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); in.decodeLoop(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			for b := range 10 {
				var evs []event.Event
				for i := range c.perBatch {
					seq := uint64(b*c.perBatch + i + 1)
					ev, err := event.NewEvent("", seq, hlc.Timestamp(seq), &event.Reading{Sensor: "t1", Type: "temperature", Value: 20})
					if err != nil {
						t.Fatal(err)
					}
					evs = append(evs, ev)
				}
				batch, err := wire.NewBatch(evs[0].Seq, evs[len(evs)-1].Seq, evs, true, 0)
				if err != nil {
					t.Fatal(err)
				}
				payload, err := wire.Encode(wire.Up{Batch: batch})
				if err != nil {
					t.Fatal(err)
				}
				in.in <- inbound{site: "s1", device: "gw-1", leaf: wire.LeafUp, payload: payload, at: time.Now()}
			}
			// The decoder takes batches from the broker's queue until it
			// waits for room, holding one: the counts settle there.
			type counts struct{ queued, received int }
			got := poll.Settled(t, 10*time.Second, 300*time.Millisecond, func() counts {
				return counts{len(in.decode), len(in.in)}
			})
			if want := (counts{c.wantQueued, 10 - c.wantQueued - 1}); got != want {
				t.Fatalf("%d batches of %d events wait for the committer and %d for a decoder, want %d and %d",
					got.queued, c.perBatch, got.received, want.queued, want.received)
			}
		})
	}
}
