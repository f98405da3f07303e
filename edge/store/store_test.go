package store

import (
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/goleak"

	"linli/shared/kv"
)

// The store is the edge's one database: a second open of its directory is
// refused while it is open, what was committed is there after a close and
// a reopen, closing twice is harmless, and nothing it started outlives
// Close.
func TestOpenCloseReopen(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	st, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DB().Update(func(txn *badger.Txn) error { return txn.Set([]byte("t/k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, kv.ErrLocked) {
		t.Fatalf("second open of an open store: %v, want kv.ErrLocked", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if !st.DB().IsClosed() {
		t.Fatal("the database is open after Close")
	}

	st, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	defer st.Close()
	var got []byte
	if err := st.DB().View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("t/k"))
		if err != nil {
			return err
		}
		got, err = item.ValueCopy(nil)
		return err
	}); err != nil || string(got) != "v" {
		t.Fatalf("after reopen: %q %v, want v", got, err)
	}
}
