package downlink

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/storetest"
	"linli/shared/wire"
)

// countingViews counts the store's read transactions.
type countingViews struct {
	store.Backend
	views atomic.Int64
}

func (c *countingViews) View(fn func(store.View) error) error {
	c.views.Add(1)
	return c.Backend.View(fn)
}

// bigNotice is a notice whose body (an integer-keyed CBOR map of 40
// fields, as views are) is worth a delta; version changes one field.
func bigNotice(version int) wire.Change {
	m := map[int]string{}
	for i := range 40 {
		m[i+1] = "一段不会变的文字"
	}
	m[1] = fmt.Sprintf("version %d", version)
	body, err := event.Marshal(m)
	if err != nil {
		panic(err)
	}
	return wire.Change{Entity: wire.EntityNotice, ID: "n1", Body: body}
}

// A commit staged while the one before it is not committed yet (ingest
// merges its next group meanwhile) continues that one's sequence and
// takes its delta's base from it; a change to an entity an earlier commit
// changed takes its base from memory, not from a read of the store; an
// Abort drops every staged commit, and the next continues from what is
// committed.
func TestStagedCommitsFollowEachOther(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) {
		cv := &countingViews{Backend: st}
		pub := &topicPub{msgs: map[string][][]byte{}}
		l, err := Open(cv, pub, hlc.NewClock(nil, 0), nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		topic := wire.SiteDown("s1")
		published := func() []wire.Down {
			t.Helper()
			pub.mu.Lock()
			defer pub.mu.Unlock()
			var out []wire.Down
			for _, p := range pub.msgs[topic] {
				d, err := wire.DecodeDown(p)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, d)
			}
			return out
		}
		appendTo := func(b store.Batch, version int) {
			t.Helper()
			if err := l.Append(b, "s1", []wire.Change{bigNotice(version)}); err != nil {
				t.Fatal(err)
			}
		}
		commit := func(b store.Batch) {
			t.Helper()
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
			l.Commit()
		}

		b1 := st.NewBatch()
		appendTo(b1, 1)
		commit(b1)
		views := cv.views.Load()
		b2, b3 := st.NewBatch(), st.NewBatch()
		appendTo(b2, 2) // base: change 1, committed
		appendTo(b3, 3) // base: change 2, staged
		if n := cv.views.Load() - views; n != 0 {
			t.Fatalf("%d reads of the store for the bases of the deltas, want none", n)
		}
		commit(b2)
		commit(b3)
		downs := published()
		if len(downs) != 3 {
			t.Fatalf("%d messages, want 3", len(downs))
		}
		for i, d := range downs {
			seq := uint64(i + 1)
			if d.Prev != seq-1 || d.Last != seq || len(d.Changes) != 1 || d.Changes[0].Seq != seq {
				t.Fatalf("message %d: prev %d last %d, %d changes; want %d..%d with change %d", i, d.Prev, d.Last, len(d.Changes), seq-1, seq, seq)
			}
			if i > 0 && (!d.Changes[0].IsDelta() || d.Changes[0].Base != seq-1) {
				t.Fatalf("change %d: delta %v from base %d, want a delta from %d", seq, d.Changes[0].IsDelta(), d.Changes[0].Base, seq-1)
			}
		}

		// Two staged, then the first fails: both go.
		b4, b5 := st.NewBatch(), st.NewBatch()
		appendTo(b4, 4)
		appendTo(b5, 5)
		b4.Discard()
		b5.Discard()
		l.Abort()
		if h := l.Head("s1"); h != 3 {
			t.Fatalf("head %d after the abort, want 3", h)
		}
		b6 := st.NewBatch()
		appendTo(b6, 6)
		commit(b6)
		downs = published()
		last := downs[len(downs)-1]
		if len(downs) != 4 || last.Prev != 3 || last.Last != 4 || last.Changes[0].Base != 3 {
			t.Fatalf("after the abort: %d messages, the last %d..%d from base %d; want 4, 3..4 from base 3",
				len(downs), last.Prev, last.Last, last.Changes[0].Base)
		}
	})
}
