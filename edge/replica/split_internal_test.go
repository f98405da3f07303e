package replica

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/merge"
	"linli/shared/wire"
)

// TestStoreWrittenBeforeSplitsOpensAndConverts: a store written before
// entities were split holds a large activity in pieces (and a small one
// whole). It opens, reads the same, takes a delta, and keeps the
// activity split from then on, its pieces gone; chunks of a split whose
// transaction never committed are dropped at open.
func TestStoreWrittenBeforeSplitsOpensAndConverts(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	db, err := kv.Open(t.TempDir(), kv.Small, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v := &merge.ActivityView{ID: "A1", Title: "t", Site: "s1", Waitlist: []string{}, Kiosks: []merge.KioskShare{}}
	for i := range 30_000 {
		v.Confirmed = append(v.Confirmed, fmt.Sprintf("R%06d", 2*i))
	}
	body, err := event.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	old := wire.Change{Seq: 7, Entity: wire.EntityActivity, ID: "A1", HLC: 70, Body: body}
	small := wire.Change{Seq: 8, Entity: "notice", ID: "n1", HLC: 80, Body: []byte{0xa0}}
	// The layout as the replica wrote it before: pieces and a pointer.
	val, err := event.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		p := pointer{Seq: old.Seq}
		for off := 0; off < len(val); off += partSize {
			if err := txn.Set(partKey(old.Seq, p.Parts), val[off:min(off+partSize, len(val))]); err != nil {
				return err
			}
			p.Parts++
		}
		pv, err := event.Marshal(p)
		if err != nil {
			return err
		}
		sv, err := event.Marshal(small)
		if err != nil {
			return err
		}
		if err := txn.Set(entityKey(old.Entity, old.ID), pv); err != nil {
			return err
		}
		if err := txn.Set(entityKey(small.Entity, small.ID), sv); err != nil {
			return err
		}
		return txn.Set([]byte(keyCursor), kv.U64(8))
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(db, "s1", "kiosk-1", log)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []wire.Change{old, small} {
		got, ok, err := r.Get(want.Entity, want.ID)
		if err != nil || !ok || got.Seq != want.Seq || !bytes.Equal(got.Body, want.Body) {
			t.Fatalf("%s %s read from the old layout: %v, %v, seq %d", want.Entity, want.ID, ok, err, got.Seq)
		}
	}

	v.Confirmed = append(v.Confirmed, "R999999")
	v.SeatsLeft = 3
	if body, err = event.Marshal(v); err != nil {
		t.Fatal(err)
	}
	d, err := wire.Diff(old.Body, body)
	if err != nil {
		t.Fatal(err)
	}
	delta := wire.Change{Seq: 9, Entity: wire.EntityActivity, ID: "A1", HLC: 90, Base: 7, BaseHLC: 70, Delta: d}
	if err := r.Apply(wire.Down{Site: "s1", Prev: 8, Last: 9, Changes: []wire.Change{delta}}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := r.Get(wire.EntityActivity, "A1")
	if err != nil || !ok || got.Seq != 9 || !bytes.Equal(got.Body, body) {
		t.Fatalf("after the delta: %v, %v, seq %d", ok, err, got.Seq)
	}
	err = db.View(func(txn *badger.Txn) error {
		s, _, err := loadStored(txn, entityKey(wire.EntityActivity, "A1"))
		if err == nil && s.split == nil {
			t.Fatal("the activity is not kept split after the delta")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := countParts(t, db); n != 0 {
		t.Fatalf("%d pieces of the old layout left", n)
	}

	// Chunks written for a split that never got applied go at open.
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(chunkKey(r.gen+1, 0), []byte{0x01}) }); err != nil {
		t.Fatal(err)
	}
	before := countChunks(t, db)
	if _, err := Open(db, "s1", "kiosk-1", log); err != nil {
		t.Fatal(err)
	}
	if n := countChunks(t, db); n != before-1 {
		t.Fatalf("%d chunks after open, want %d", n, before-1)
	}
	if got, ok, err := r.Get(wire.EntityActivity, "A1"); err != nil || !ok || !bytes.Equal(got.Body, body) {
		t.Fatalf("after open: %v, %v", ok, err)
	}
}

func countChunks(t *testing.T, db *badger.DB) int {
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = []byte(prefixChunk), false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLargeFieldsBesideALongListStayWhole: a change whose fields other
// than its lists are larger than a piece is kept whole in pieces, not
// split (the split's own part would not fit a value), and reads back.
func TestLargeFieldsBesideALongListStayWhole(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	db, err := kv.Open(t.TempDir(), kv.Small, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := Open(db, "s1", "kiosk-1", log)
	if err != nil {
		t.Fatal(err)
	}
	long := make([]string, 5000)
	for i := range long {
		long[i] = fmt.Sprintf("R%06d", i)
	}
	body, err := event.Marshal(map[int]any{1: string(bytes.Repeat([]byte("x"), 2*partSize)), 2: long})
	if err != nil {
		t.Fatal(err)
	}
	c := wire.Change{Seq: 1, Entity: wire.EntityActivity, ID: "A1", HLC: 10, Body: body}
	if err := r.Apply(wire.Down{Site: "s1", Prev: 0, Last: 1, Changes: []wire.Change{c}}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := r.Get(wire.EntityActivity, "A1")
	if err != nil || !ok || !bytes.Equal(got.Body, body) {
		t.Fatalf("read back: %v, %v, body equal %v", ok, err, bytes.Equal(got.Body, body))
	}
	if n := countChunks(t, db); n != 0 {
		t.Fatalf("%d chunks written for a change kept whole", n)
	}
}
