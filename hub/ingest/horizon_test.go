package ingest_test

import (
	"testing"

	"linli/hub/ingest"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

// batch packs check-ins of seqs [from, to] for the test device.
func batch(t *testing.T, clock *hlc.Clock, from, to uint64) *wire.Batch {
	t.Helper()
	var evs []event.Event
	for seq := from; seq <= to; seq++ {
		ev, err := event.NewEvent("", seq, clock.Now(), &event.Checkin{Resident: "R1", Activity: "A7", Action: "in", Status: event.StatusRecorded})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	b, err := wire.NewBatch(from, to, evs, false, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An edge whose oldest held seq lies above the hub's acked+1 (it deleted
// acked events no backup covered, and the hub was restored) can never send
// the seqs between: the hub records them as lost once, acks past them at
// once, and takes the device's later events. Before, the hub answered with
// its acked seq and its device record kept no trace of the hole.
func TestHelloAboveAckedRecordsTheHoleAsLost(t *testing.T) {
	acks := make(chan wire.Ack, 64)
	tr := newTransport(false, acks)
	h := runIngest(t, tr, false, 1)
	const site, device = "s1", "gw-1"
	up := wire.Topic(site, device, wire.LeafUp)
	next := func(what string) wire.Ack {
		t.Helper()
		var a wire.Ack
		poll.WaitFor(t, what, func() bool {
			select {
			case a = <-acks:
				return true
			default:
				return false
			}
		})
		return a
	}

	tr.deliverUp(t, up, wire.Up{Hello: &wire.Hello{Role: "gateway", Clock: h.clock.Now(), LastSeq: 10, First: 1}})
	if a := next("the first hello's ack"); a.Acked != 0 {
		t.Fatalf("first hello acked %d, want 0", a.Acked)
	}
	tr.deliverUp(t, up, wire.Up{Batch: batch(t, h.clock, 1, 10)})
	if a := next("the batch's ack"); a.Acked != 10 {
		t.Fatalf("batch acked %d, want 10", a.Acked)
	}

	// The edge now holds 21..25 only: 11..20 are gone for good.
	for range 2 { // a second hello must not count the hole again
		tr.deliverUp(t, up, wire.Up{Hello: &wire.Hello{Role: "gateway", Clock: h.clock.Now(), LastSeq: 25, AckedSeq: 25, First: 21}})
		if a := next("the hello's ack"); !a.Hello || a.Acked != 20 {
			t.Fatalf("hello ack %+v, want acked 20 (past the hole)", a)
		}
	}
	d, _ := h.in.Device(device)
	if d.Lost != 10 || len(d.Gaps) != 1 || d.Gaps[0] != (store.Range{From: 11, To: 20}) {
		t.Fatalf("device lost %d gaps %v, want 10 in [11, 20]", d.Lost, d.Gaps)
	}
	tr.deliverUp(t, up, wire.Up{Batch: batch(t, h.clock, 21, 25)})
	if a := next("the ack after the hole"); a.Acked != 25 {
		t.Fatalf("ack after the hole %d, want 25", a.Acked)
	}
	poll.WaitFor(t, "the lost count on disk", func() bool {
		recs, err := h.store.Devices()
		return err == nil && len(recs) == 1 && recs[0].Lost == 10 && recs[0].Acked == 25
	})
}

type horizonOf map[string]uint64

func (h horizonOf) Of(site, device string, base uint64) (uint64, bool) {
	seq, ok := h[site+"/"+device]
	return max(seq, base), ok
}

var _ ingest.Horizon = horizonOf(nil)

// Every ack carries the device's backup horizon when the hub takes
// backups, never above what it acks, and none when it does not.
func TestAcksCarryTheBackupHorizon(t *testing.T) {
	for _, tc := range []struct {
		name    string
		horizon ingest.Horizon
		want    []any // per ack: nil (absent) or the seq
	}{
		{"no backups", nil, []any{nil, nil}},
		{"backups", horizonOf{"s1/gw-1": 3}, []any{uint64(0), uint64(3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acks := make(chan wire.Ack, 64)
			tr := newTransport(false, acks)
			h := runIngest(t, tr, false, 1, func(o *ingest.Options, _ store.Backend) { o.Horizon = tc.horizon })
			up := wire.Topic("s1", "gw-1", wire.LeafUp)
			tr.deliverUp(t, up, wire.Up{Hello: &wire.Hello{Role: "gateway", Clock: h.clock.Now(), LastSeq: 5, First: 1}})
			tr.deliverUp(t, up, wire.Up{Batch: batch(t, h.clock, 1, 5)})
			for i, want := range tc.want {
				var a wire.Ack
				poll.WaitFor(t, "an ack", func() bool {
					select {
					case a = <-acks:
						return true
					default:
						return false
					}
				})
				switch {
				case want == nil && a.Horizon != nil:
					t.Errorf("ack %d: horizon %d, want none", i, *a.Horizon)
				case want != nil && (a.Horizon == nil || *a.Horizon != want.(uint64)):
					t.Errorf("ack %d: horizon %v, want %d", i, a.Horizon, want)
				}
			}
		})
	}
}
