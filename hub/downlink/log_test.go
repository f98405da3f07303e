package downlink

import (
	"bytes"
	"log/slog"
	"testing"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/storetest"
	"linli/shared/wire"
)

// logOn opens a downlink log over a store in dir, unsigned, publishing to
// pub, with gw-1 the site's only gateway.
func logOn(t *testing.T, st store.Backend, pub *topicPub) *Log {
	t.Helper()
	l, err := Open(st, pub, hlc.NewClock(nil, 0), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.SetDevices(gateways{})
	return l
}

// commit appends changes for s1 in one durable batch.
func commit(t *testing.T, st store.Backend, l *Log, changes ...wire.Change) {
	t.Helper()
	b := st.NewBatch()
	if err := l.Append(b, "s1", changes); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	l.Commit()
}

// caughtUp asks for a catch-up of device from cursor and returns what was
// sent on its own topic (one Down: these logs are small).
func caughtUp(t *testing.T, l *Log, pub *topicPub, device string, cursor uint64) (wire.Down, bool) {
	t.Helper()
	pub.msgs = map[string][][]byte{}
	if err := l.CatchUp("s1", device, cursor); err != nil {
		t.Fatal(err)
	}
	msgs := pub.msgs[wire.Topic("s1", device, wire.LeafDown)]
	if len(msgs) == 0 {
		return wire.Down{}, false
	}
	if len(msgs) != 1 {
		t.Fatalf("%d catch-up messages, want 1", len(msgs))
	}
	d, err := wire.DecodeDown(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	return d, true
}

func seqs(d wire.Down) []uint64 {
	var out []uint64
	for _, c := range d.Changes {
		out = append(out, c.Seq)
	}
	return out
}

func notice(id, body string) wire.Change {
	return wire.Change{Entity: wire.EntityNotice, ID: id, Body: cb(body)}
}

// cb is s as an entity body (CBOR).
func cb(s string) []byte {
	b, err := event.Marshal(s)
	if err != nil {
		panic(err)
	}
	return b
}

// The log keeps only each entity's newest change; a catch-up sends what
// lies after the device's cursor (a snapshot from the start when the
// cursor is ahead of the log), only the device's own and its role's
// changes, and nothing to a device that is up to date. The heads and the
// entity index come back when the log is opened again.
func TestCompactionCatchUpAndCursor(t *testing.T) {
	storetest.ForEach(t, testCompactionCatchUpAndCursor)
}

func testCompactionCatchUpAndCursor(t *testing.T, st storetest.Store, reopen func() storetest.Store) {
	pub := &topicPub{msgs: map[string][][]byte{}}
	l := logOn(t, st, pub)

	commit(t, st, l, notice("n1", "first"), notice("n2", "second"))                                                   // 1, 2
	commit(t, st, l, wire.Change{Entity: wire.EntityNotice, ID: "n3", Device: "k2", Body: cb("k2's")})                // 3
	commit(t, st, l, wire.Change{Entity: wire.EntityAccessList, ID: "B1", Role: wire.RoleGateway, Body: cb("cards")}) // 4
	commit(t, st, l, notice("n1", "first, edited"))                                                                   // 5 replaces 1
	if h := l.Head("s1"); h != 5 {
		t.Fatalf("head %d, want 5", h)
	}
	if seq, ok := l.Seq("s1", wire.EntityNotice, "n1"); !ok || seq != 5 {
		t.Fatalf("Seq(n1) = %d, %v; want 5", seq, ok)
	}

	for _, tc := range []struct {
		name     string
		device   string
		cursor   uint64
		want     []uint64 // nil: nothing sent
		snapshot bool
	}{
		{"a new kiosk", "k1", 0, []uint64{2, 5}, false},
		{"the kiosk a change is for", "k2", 0, []uint64{2, 3, 5}, false},
		{"the gateway", "gw-1", 0, []uint64{2, 4, 5}, false},
		{"from a cursor", "k2", 3, []uint64{5}, false},
		{"up to date", "k1", 5, nil, false},
		{"ahead of the log", "k1", 9, []uint64{2, 5}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, sent := caughtUp(t, l, pub, tc.device, tc.cursor)
			if tc.want == nil {
				if sent {
					t.Fatalf("sent %v to a device at the head", seqs(d))
				}
				return
			}
			if !sent {
				t.Fatal("nothing sent")
			}
			if got := seqs(d); !equal(got, tc.want) || d.Last != 5 || d.Snapshot != tc.snapshot {
				t.Errorf("changes %v, last %d, snapshot %v; want %v, 5, %v", got, d.Last, d.Snapshot, tc.want, tc.snapshot)
			}
			if wantPrev := map[bool]uint64{true: 0, false: tc.cursor}[tc.snapshot]; d.Prev != wantPrev {
				t.Errorf("prev %d, want %d", d.Prev, wantPrev)
			}
			for _, c := range d.Changes {
				if c.ID == "n1" && !bytes.Equal(c.Body, cb("first, edited")) {
					t.Errorf("n1 caught up as %q, want its newest version", c.Body)
				}
			}
		})
	}

	// Reopened, the log knows its head and index: the next change numbers
	// on and still replaces the entity's newest.
	st = reopen()
	l2 := logOn(t, st, pub)
	if h := l2.Head("s1"); h != 5 {
		t.Fatalf("head after reopen %d, want 5", h)
	}
	commit(t, st, l2, notice("n1", "third version")) // 6 replaces 5
	d, _ := caughtUp(t, l2, pub, "k1", 0)
	if got := seqs(d); !equal(got, []uint64{2, 6}) {
		t.Errorf("after reopen and an edit: %v, want [2 6]", got)
	}
}

// An aborted commit changes nothing: neither the head nor what a catch-up
// sends, and the next commit takes the seqs it would have.
func TestAbortLeavesTheLog(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) { testAbortLeavesTheLog(t, st) })
}

func testAbortLeavesTheLog(t *testing.T, st store.Backend) {
	pub := &topicPub{msgs: map[string][][]byte{}}
	l := logOn(t, st, pub)
	commit(t, st, l, notice("n1", "kept"))
	b := st.NewBatch()
	if err := l.Append(b, "s1", []wire.Change{notice("n1", "lost"), notice("n2", "lost")}); err != nil {
		t.Fatal(err)
	}
	b.Discard()
	l.Abort()
	pub.msgs = map[string][][]byte{}
	l.Commit() // nothing staged: nothing sent
	if len(pub.msgs) != 0 || l.Head("s1") != 1 {
		t.Fatalf("after an abort: head %d, sent %d topics", l.Head("s1"), len(pub.msgs))
	}
	commit(t, st, l, notice("n2", "next"))
	d, _ := caughtUp(t, l, pub, "k1", 0)
	if got := seqs(d); !equal(got, []uint64{1, 2}) || !bytes.Equal(d.Changes[0].Body, cb("kept")) {
		t.Errorf("after abort and commit: %v (%q), want [1 2] with n1 kept", got, d.Changes[0].Body)
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
