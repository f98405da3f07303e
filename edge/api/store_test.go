package api_test

import (
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/edge/outbox"
	"linli/edge/store"
)

// testStores are the edge stores the tests opened, by dir.
var testStores sync.Map

// openLog opens the edge's store in dir and the outbox in it, as the edge
// program does. A store the test opened on dir before is closed first
// (its log closed first, as at a restart); the last one closes when the
// test ends, after the outbox (whose close the caller registers later,
// or defers).
func openLog(t testing.TB, dir string, opts outbox.Options) (*outbox.Log, *badger.DB, error) {
	t.Helper()
	if old, ok := testStores.LoadAndDelete(dir); ok {
		if err := old.(*store.Store).Close(); err != nil {
			return nil, nil, err
		}
	}
	st, err := store.Open(store.Options{Dir: dir, GCInterval: time.Hour})
	if err != nil {
		return nil, nil, err
	}
	testStores.Store(dir, st)
	t.Cleanup(func() {
		testStores.CompareAndDelete(dir, st)
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	ob, err := outbox.Open(st.DB(), opts)
	return ob, st.DB(), err
}
