package replica_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"pgregory.net/rapid"

	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/merge"
	"linli/shared/wire"
)

// TestSplitActivityFollowsDeltas: an activity of 2,500 to 5,000 residents
// is kept split (its lists in chunks); sign-ups anywhere in the list,
// cancellations, waitlist moves and field changes, one or several to a
// message, give after each message exactly the hub's body, and a search
// for a resident reads the split and one chunk.
func TestSplitActivityFollowsDeltas(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	db, err := kv.Open(t.TempDir(), kv.Small, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rapid.Check(t, func(t *rapid.T) {
		if _, err := kv.DeleteAll(db, []byte("r/")); err != nil {
			t.Fatal(err)
		}
		rep, err := replica.Open(db, site1, "kiosk-1", log)
		if err != nil {
			t.Fatal(err)
		}
		n := rapid.IntRange(2500, 5000).Draw(t, "residents")
		v := &merge.ActivityView{ID: "A1", Title: "t", Site: site1, Capacity: 0, Waitlist: []string{}, Kiosks: []merge.KioskShare{}}
		for i := range n {
			v.Confirmed = append(v.Confirmed, fmt.Sprintf("R%05d", 2*i))
		}
		body := func() []byte {
			b, err := event.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		seq := uint64(1)
		held := wire.Change{Seq: seq, Entity: wire.EntityActivity, ID: "A1", HLC: hlc.Timestamp(seq), Body: body()}
		if err := rep.Apply(wire.Down{Site: site1, Prev: 0, Last: 1, Changes: []wire.Change{held}}); err != nil {
			t.Fatal(err)
		}
		if keys := countKeys(t, db, "r/c/"); keys < 2 {
			t.Fatalf("%d chunks for %d residents", keys, n)
		}
		for range rapid.IntRange(1, 30).Draw(t, "messages") {
			var cs []wire.Change
			prev := seq
			for range rapid.IntRange(1, 3).Draw(t, "changes") {
				r := fmt.Sprintf("R%05d", rapid.IntRange(0, 2*n+10).Draw(t, "resident"))
				switch rapid.IntRange(0, 4).Draw(t, "op") {
				case 0, 1: // signs up
					if i, ok := slices.BinarySearch(v.Confirmed, r); !ok {
						v.Confirmed = slices.Insert(v.Confirmed, i, r)
					}
				case 2: // cancels
					if i, ok := slices.BinarySearch(v.Confirmed, r); ok {
						v.Confirmed = slices.Delete(v.Confirmed, i, i+1)
					}
				case 3: // joins the waitlist, or the first on it is promoted
					if len(v.Waitlist) > 0 && rapid.Bool().Draw(t, "promote") {
						v.Waitlist = v.Waitlist[1:]
					} else {
						v.Waitlist = append(v.Waitlist, r)
					}
				default:
					v.SeatsLeft++
					v.Description = rapid.SampledFrom([]string{"", "义诊", "a longer description"}).Draw(t, "desc")
				}
				seq++
				next := wire.Change{Seq: seq, Entity: wire.EntityActivity, ID: "A1", HLC: hlc.Timestamp(seq), Body: body()}
				d, err := wire.Diff(held.Body, next.Body)
				if err != nil {
					t.Fatal(err)
				}
				cs = append(cs, wire.Change{Seq: seq, Entity: wire.EntityActivity, ID: "A1", HLC: next.HLC, Base: held.Seq, BaseHLC: held.HLC, Delta: d})
				held = next
			}
			if err := rep.Apply(wire.Down{Site: site1, Prev: prev, Last: seq, Changes: cs}); err != nil {
				t.Fatal(err)
			}
			if rep.Cursor() != seq {
				t.Fatalf("cursor %d, want %d (a delta missed)", rep.Cursor(), seq)
			}
			got, ok, err := rep.Get(wire.EntityActivity, "A1")
			if err != nil || !ok || got.Seq != seq || !bytes.Equal(got.Body, held.Body) {
				t.Fatalf("after seq %d: held %v, seq %d, %v; body equal %v", seq, ok, got.Seq, err, bytes.Equal(got.Body, held.Body))
			}
		}
		err = db.View(func(txn *badger.Txn) error {
			for range 20 {
				r := fmt.Sprintf("R%05d", rapid.IntRange(0, 2*n+10).Draw(t, "sought"))
				_, want := slices.BinarySearch(v.Confirmed, r)
				got, err := replica.SearchTxn(txn, wire.EntityActivity, "A1", 8, replica.TextCmp(r))
				if err != nil {
					return err
				}
				if got != want {
					t.Fatalf("search %s: %v, want %v", r, got, want)
				}
			}
			h, ok, err := replica.HeadTxn(txn, wire.EntityActivity, "A1")
			if err != nil || !ok || !h.Split || h.Seq != seq || len(h.Body) > 1024 {
				t.Fatalf("head: found %v, split %v, seq %d (want %d), %d bytes, %v", ok, h.Split, h.Seq, seq, len(h.Body), err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestDeltaToALargeActivityCostsWhatChanged: one sign-up to an activity of
// 30,000 residents (a 270 KB view) allocates a few KB on the edge, not
// copies of the view (over 1 MB a delta when the replica stored each
// entity whole).
func TestDeltaToALargeActivityCostsWhatChanged(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	db, err := kv.Open(t.TempDir(), kv.Small, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep, err := replica.Open(db, site1, "kiosk-1", log)
	if err != nil {
		t.Fatal(err)
	}
	allocated := largeActivityDeltas(t, rep, 30_000, 100)
	t.Logf("allocated %d", allocated)
	if allocated > 256<<10 {
		t.Fatalf("%d bytes allocated per one-resident delta to a 30,000-resident activity", allocated)
	}
}

// largeActivityDeltas stores an activity of n residents, then applies
// deltas one sign-up each (inserted in the middle of the list) and returns
// the bytes allocated per delta.
func largeActivityDeltas(t testing.TB, rep *replica.Replica, n, deltas int) uint64 {
	v := &merge.ActivityView{ID: "A1", Title: "t", Site: site1, Waitlist: []string{}, Kiosks: []merge.KioskShare{}}
	for i := range n {
		v.Confirmed = append(v.Confirmed, fmt.Sprintf("R%06d", 2*i))
	}
	held := wire.Change{Seq: 1, Entity: wire.EntityActivity, ID: "A1", HLC: 1}
	var err error
	if held.Body, err = event.Marshal(v); err != nil {
		t.Fatal(err)
	}
	if err := rep.Apply(wire.Down{Site: site1, Prev: 0, Last: 1, Changes: []wire.Change{held}}); err != nil {
		t.Fatal(err)
	}
	// The deltas, made before measuring.
	var msgs []wire.Down
	for i := range deltas {
		r := fmt.Sprintf("R%06d", n+2*i+1)
		j, _ := slices.BinarySearch(v.Confirmed, r)
		v.Confirmed = slices.Insert(v.Confirmed, j, r)
		v.SeatsLeft++
		next := wire.Change{Seq: held.Seq + 1, Entity: wire.EntityActivity, ID: "A1", HLC: hlc.Timestamp(held.Seq + 1)}
		if next.Body, err = event.Marshal(v); err != nil {
			t.Fatal(err)
		}
		d, err := wire.Diff(held.Body, next.Body)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, wire.Down{Site: site1, Prev: held.Seq, Last: next.Seq, Changes: []wire.Change{
			{Seq: next.Seq, Entity: wire.EntityActivity, ID: "A1", HLC: next.HLC, Base: held.Seq, BaseHLC: held.HLC, Delta: d}}})
		held = next
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, m := range msgs {
		if err := rep.Apply(m); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if got, ok, err := rep.Get(wire.EntityActivity, "A1"); err != nil || !ok || !bytes.Equal(got.Body, held.Body) {
		t.Fatalf("after the deltas: held %v, %v, body equal %v", ok, err, bytes.Equal(got.Body, held.Body))
	}
	return (after.TotalAlloc - before.TotalAlloc) / uint64(deltas)
}
