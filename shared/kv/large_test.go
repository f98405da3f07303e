package kv

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

func openSmall(t *testing.T) *badger.DB {
	t.Helper()
	db, err := Open(t.TempDir(), Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// contents lists every key of the store with its value's size.
func contents(t *testing.T, db *badger.DB) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out[string(it.Item().Key())] = int(it.Item().ValueSize())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func getLarge(t *testing.T, db *badger.DB, key string) ([]byte, bool) {
	t.Helper()
	var (
		val   []byte
		found bool
	)
	if err := db.View(func(txn *badger.Txn) error {
		var err error
		val, found, err = GetLarge(txn, []byte(key))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return val, found
}

// The small profile's largest transaction takes a value just under its
// inline threshold, and PutLarge's pieces sit well under that.
func TestSmallProfileLimits(t *testing.T) {
	db := openSmall(t)
	if err := db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte("big"), make([]byte, SmallInline-1024))
	}); err != nil {
		t.Fatalf("a value just under SmallInline: %v", err)
	}
	if PieceSize >= SmallInline/2 {
		t.Errorf("PieceSize %d leaves too little room under SmallInline %d", PieceSize, SmallInline)
	}
}

func TestPutLarge(t *testing.T) {
	db := openSmall(t)
	const key = "g/acl"
	// Each step replaces the value: whole, in pieces, more pieces, fewer,
	// whole again, empty.
	steps := []struct {
		name string
		size int
	}{
		{"small", 100},
		{"exactly one piece", PieceSize},
		{"just over one piece", PieceSize + 1},
		{"1 MiB", 1 << 20},
		{"3 MiB, more than one transaction holds", 3 << 20},
		{"fewer pieces", 300 << 10},
		{"small again", 10},
		{"empty", 0},
	}
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			val := randomBytes(s.size, uint64(i))
			if err := PutLarge(db, []byte(key), val); err != nil {
				t.Fatal(err)
			}
			got, found := getLarge(t, db, key)
			if !found || !bytes.Equal(got, val) {
				t.Fatalf("read back %d bytes (found %v), want %d", len(got), found, len(val))
			}
			stored := 0
			for k, n := range contents(t, db) {
				if n > PieceSize {
					t.Errorf("%q holds %d bytes, more than a piece", k, n)
				}
				stored += n
			}
			// Only the value in force is kept (plus a 12-byte manifest).
			if stored > s.size+12 {
				t.Errorf("store holds %d value bytes for a %d-byte value: old pieces left", stored, s.size)
			}
		})
	}
	if _, found := getLarge(t, db, "other"); found {
		t.Error("a key never stored is found")
	}
}

// A crash while the pieces of a new value are written leaves the old value
// in force, and the next write removes what the cut attempt left.
func TestPutLargeAfterCrash(t *testing.T) {
	for _, tc := range []struct {
		name      string
		old, next int // sizes
		leftover  int // pieces of the cut attempt (one generation on)
	}{
		{"whole value, cut attempt at pieces", 50, 400 << 10, 3},
		{"pieced value, cut attempt with more pieces than the next", 300 << 10, 200 << 10, 8},
		{"pieced value, next is whole", 300 << 10, 20, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openSmall(t)
			key := []byte("g/acl")
			old := randomBytes(tc.old, 1)
			if err := PutLarge(db, key, old); err != nil {
				t.Fatal(err)
			}
			var gen uint64
			if err := db.View(func(txn *badger.Txn) error {
				var err error
				gen, _, _, err = manifest(txn, key)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			// What a cut between the pieces and the manifest leaves.
			if err := db.Update(func(txn *badger.Txn) error {
				for i := range uint32(tc.leftover) {
					if err := txn.Set(pieceKey(key, gen+1, i), []byte(fmt.Sprint("cut", i))); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if got, _ := getLarge(t, db, string(key)); !bytes.Equal(got, old) {
				t.Fatalf("after the cut: read %d bytes, want the old %d", len(got), len(old))
			}
			next := randomBytes(tc.next, 2)
			if err := PutLarge(db, key, next); err != nil {
				t.Fatal(err)
			}
			if got, _ := getLarge(t, db, string(key)); !bytes.Equal(got, next) {
				t.Fatalf("read %d bytes, want the new %d", len(got), len(next))
			}
			stored := 0
			for _, n := range contents(t, db) {
				stored += n
			}
			if stored > tc.next+12 {
				t.Errorf("store holds %d value bytes for a %d-byte value: the cut attempt's pieces are left", stored, tc.next)
			}
		})
	}
}

// A manifest that is not 12 bytes is an error, not a wrong value.
func TestGetLargeBadManifest(t *testing.T) {
	db := openSmall(t)
	key := []byte("k")
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(manifestKey(key), []byte("short")) }); err != nil {
		t.Fatal(err)
	}
	err := db.View(func(txn *badger.Txn) error { _, _, err := GetLarge(txn, key); return err })
	if err == nil {
		t.Fatal("a 5-byte manifest was read without an error")
	}
	if errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("error %v, want one naming the manifest", err)
	}
}

// A store an older edge wrote (8 MiB memtables, Snappy tables, 1 MiB
// inline values) opens with today's small profile and reads back whole:
// Badger keeps each table's compression in its manifest.
func TestSmallProfileOpensOlderStore(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	old := Options(dir, Small, log).WithMemTableSize(8 << 20).WithCompression(options.Snappy).WithValueThreshold(1 << 20)
	old.TableSizeMultiplier = 2
	db, err := OpenWith(old)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := range 20 {
		wb := db.NewWriteBatch()
		for j := range 2000 {
			k := fmt.Sprintf("k%02d/%05d", i, j)
			v := bytes.Repeat([]byte(k), 8) // compressible: Snappy does work
			want[k] = v
			if err := wb.Set([]byte(k), v); err != nil {
				t.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flatten(1); err != nil { // tables on disk, not only in the log
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, Small, log)
	if err != nil {
		t.Fatalf("open an older store with today's profile: %v", err)
	}
	defer db.Close()
	got := 0
	if err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if !bytes.Equal(v, want[k]) {
				t.Fatalf("%s = %q, want %q", k, v, want[k])
			}
			got++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != len(want) {
		t.Fatalf("read %d keys back, want %d", got, len(want))
	}
}
