// Package storetest runs a test against both implementations of the
// hub's store (store.Backend): the embedded Badger store on a temporary
// directory and PostgreSQL on a database of the test's own
// (testkit.StartPostgres). A package using it stops PostgreSQL in its
// TestMain (testkit.PostgresMain).
package storetest

import (
	"context"
	"log/slog"
	"testing"

	"linli/hub/pgstore"
	"linli/hub/store"
	"linli/shared/kv"
	"linli/shared/test/testkit"
)

// Store is a hub store that can be closed.
type Store interface {
	store.Backend
	Close() error
}

// Impl opens one implementation; reopen opens the same store again after
// Close.
type Impl struct {
	Name string
	Open func(t testing.TB, log *slog.Logger) (st Store, reopen func() Store)
}

// Impls are both implementations, Badger first.
var Impls = []Impl{
	{"badger", func(t testing.TB, log *slog.Logger) (Store, func() Store) {
		dir := t.TempDir()
		open := func() Store {
			st, err := store.Open(dir, kv.Server, log)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		return open(), open
	}},
	{"postgres", func(t testing.TB, log *slog.Logger) (Store, func() Store) {
		url := testkit.StartPostgres(t)
		open := func() Store {
			st, err := pgstore.Open(context.Background(), url, log)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		return open(), open
	}},
}

// ForEach runs f as a subtest per implementation, with a store of its own
// and reopen, which closes the store f holds and opens it again. The
// store open at the end is closed when the subtest ends.
func ForEach(t *testing.T, f func(t *testing.T, st Store, reopen func() Store)) {
	ForEachLogged(t, slog.New(slog.DiscardHandler), f)
}

// ForEachLogged is ForEach with the stores logging to log.
func ForEachLogged(t *testing.T, log *slog.Logger, f func(t *testing.T, st Store, reopen func() Store)) {
	for _, impl := range Impls {
		t.Run(impl.Name, func(t *testing.T) {
			st, open := impl.Open(t, log)
			cur := st
			t.Cleanup(func() { cur.Close() })
			f(t, st, func() Store {
				if err := cur.Close(); err != nil {
					t.Fatal(err)
				}
				cur = open()
				return cur
			})
		})
	}
}
