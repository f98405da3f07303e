package downlink

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"linli/hub/store"
	"linli/shared/test/storetest"
	"linli/shared/wire"
)

// readCounter is a store whose reads of the change log (keys under l/)
// are counted: opening the log must not read it, however long it is.
type readCounter struct {
	store.Backend
	changes *atomic.Int64
}

func (r readCounter) View(fn func(store.View) error) error {
	return r.Backend.View(func(v store.View) error { return fn(countingView{v, r.changes}) })
}

type countingView struct {
	store.View
	changes *atomic.Int64
}

func (v countingView) Get(key []byte) ([]byte, uint64, error) {
	v.count(key)
	return v.View.Get(key)
}

func (v countingView) Scan(prefix, from []byte, since uint64, fn func(key, val []byte, version uint64) (bool, error)) error {
	return v.View.Scan(prefix, from, since, func(key, val []byte, version uint64) (bool, error) {
		v.count(key)
		return fn(key, val, version)
	})
}

func (v countingView) count(key []byte) {
	if bytes.HasPrefix(key, []byte(prefix)) {
		v.changes.Add(1)
	}
}

// history commits two versions each of n notices of s1 (seqs 1..2n).
func history(t *testing.T, st store.Backend, l *Log, n int) {
	t.Helper()
	for v := range 2 {
		var cs []wire.Change
		for i := range n {
			cs = append(cs, notice(fmt.Sprintf("n%d", i), fmt.Sprintf("version %d", v)))
		}
		commit(t, st, l, cs...)
	}
}

// oneEach checks that a catch-up from 0 sends n changes, one per notice,
// and n7's body is want.
func oneEach(t *testing.T, l *Log, pub *topicPub, n int, want string) {
	t.Helper()
	d, _ := caughtUp(t, l, pub, "k1", 0)
	ids := map[string]int{}
	for _, c := range d.Changes {
		ids[c.ID]++
		if c.ID == "n7" && !bytes.Equal(c.Body, cb(want)) {
			t.Errorf("n7 caught up as %q, want %q", c.Body, want)
		}
	}
	if len(d.Changes) != n || len(ids) != n {
		t.Errorf("a catch-up from 0 sends %d changes of %d notices, want one each of %d", len(d.Changes), len(ids), n)
	}
}

// Opening the log reads none of its changes (it held one per entity a
// site ever had, all read and indexed in memory at every start), and the
// reopened log still numbers on from the head and replaces an entity's
// newest change.
func TestOpenReadsNoChange(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, reopen func() storetest.Store) {
		const n = 50
		pub := &topicPub{msgs: map[string][][]byte{}}
		history(t, st, logOn(t, st, pub), n)

		st = reopen()
		var reads atomic.Int64
		l := logOn(t, readCounter{st, &reads}, pub)
		if got := reads.Load(); got != 0 {
			t.Fatalf("opening the log read %d of its changes, want none", got)
		}
		if h := l.Head("s1"); h != 2*n {
			t.Fatalf("head %d, want %d", h, 2*n)
		}
		if seq, ok := l.Seq("s1", wire.EntityNotice, "n7"); !ok || seq != n+8 {
			t.Fatalf("Seq(n7) = %d, %v; want %d", seq, ok, n+8)
		}
		commit(t, st, l, notice("n7", "after the restart"))
		if h := l.Head("s1"); h != 2*n+1 {
			t.Fatalf("head %d, want %d", h, 2*n+1)
		}
		oneEach(t, l, pub, n, "after the restart")
	})
}

// A log written before the index existed (no index, no heads, no mark)
// gets them built when it is opened, once: heads, Seq and the replacing
// of an entity's newest change are as if it had always had them.
func TestIndexBuiltForAnOlderLog(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, reopen func() storetest.Store) {
		const n = 30
		pub := &topicPub{msgs: map[string][][]byte{}}
		history(t, st, logOn(t, st, pub), n)
		// What an older hub left: the log alone.
		var keys [][]byte
		err := st.View(func(v store.View) error {
			for _, p := range []string{prefixIndex, prefixHead, keyIndexed} {
				if err := v.Scan([]byte(p), nil, 0, func(key, _ []byte, _ uint64) (bool, error) {
					keys = append(keys, key)
					return true, nil
				}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != n+2 {
			t.Fatalf("%d index, head and mark keys, want %d", len(keys), n+2)
		}
		b := st.NewBatch()
		for _, k := range keys {
			b.Delete(k)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}

		st = reopen()
		l := logOn(t, st, pub)
		if h := l.Head("s1"); h != 2*n {
			t.Fatalf("head %d, want %d", h, 2*n)
		}
		if seq, ok := l.Seq("s1", wire.EntityNotice, "n7"); !ok || seq != n+8 {
			t.Fatalf("Seq(n7) = %d, %v; want %d", seq, ok, n+8)
		}
		commit(t, st, l, notice("n7", "after the upgrade"))
		oneEach(t, l, pub, n, "after the upgrade")

		// Built once: the next open reads no change.
		st = reopen()
		var reads atomic.Int64
		l = logOn(t, readCounter{st, &reads}, pub)
		if got := reads.Load(); got != 0 {
			t.Fatalf("the second open read %d changes, want none", got)
		}
		if h := l.Head("s1"); h != 2*n+1 {
			t.Fatalf("head %d, want %d", h, 2*n+1)
		}
	})
}

// A kiosk that catches up from nothing after a long history, across a
// restart of the hub, holds what a kiosk that applied every live change
// holds: the stored index made each change replace its entity's
// previous one, whichever run of the hub wrote it.
func TestCatchUpMatchesFollowingEveryChange(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, reopen func() storetest.Store) {
		pub := &topicPub{msgs: map[string][][]byte{}}
		l := logOn(t, st, pub)
		rng := rand.New(rand.NewPCG(7, 11))
		live := map[string]string{} // what the follower holds: notice → body
		follow := func() {
			for _, m := range pub.msgs[wire.SiteDown("s1")] {
				d, err := wire.DecodeDown(m)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range d.Changes {
					if c.Deleted {
						delete(live, c.ID)
						continue
					}
					live[c.ID] = string(c.Body)
				}
			}
			pub.msgs = map[string][][]byte{}
		}
		const entities = 40
		for round := range 60 {
			if round == 30 {
				st = reopen()
				l = logOn(t, st, pub)
			}
			var cs []wire.Change
			for range 1 + rng.IntN(6) {
				id := fmt.Sprintf("n%d", rng.IntN(entities))
				if rng.IntN(5) == 0 {
					cs = append(cs, wire.Change{Entity: wire.EntityNotice, ID: id, Deleted: true})
					continue
				}
				cs = append(cs, notice(id, fmt.Sprintf("%s in round %d", id, round)))
			}
			commit(t, st, l, cs...)
			follow()
		}
		d, _ := caughtUp(t, l, pub, "k1", 0)
		caught := map[string]string{}
		ids := map[string]bool{}
		for _, c := range d.Changes {
			if ids[c.ID] {
				t.Fatalf("the log holds two changes of %s", c.ID)
			}
			ids[c.ID] = true
			if !c.Deleted {
				caught[c.ID] = string(c.Body)
			}
		}
		if len(caught) != len(live) {
			t.Fatalf("caught up %d notices, the follower holds %d", len(caught), len(live))
		}
		for id, body := range live {
			if caught[id] != body {
				t.Errorf("%s: caught up %q, followed %q", id, caught[id], body)
			}
		}
	})
}
