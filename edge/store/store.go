// Package store opens and owns an edge's Badger database. An edge keeps
// one database per process (one set of caches and memory tables keeps a
// board's memory low): the outbox, the replica, the seat ledgers, the
// gateway's state and the kiosk's index and report numbers each keep
// their records in it under key prefixes of their own (see their
// KeyPrefixes) and are handed the database when they are built. The
// store runs Badger's value-log GC and closes the database, after the
// packages using it have stopped.
package store

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
)

// Options configure a Store.
type Options struct {
	Dir        string
	Profile    kv.Profile    // memory profile (default kv.Small)
	GCInterval time.Duration // value-log GC interval (default a minute)
	Logger     *slog.Logger
	// UnsafeNoSync turns Badger's SyncWrites off. Test-only: the fault
	// suite's negative control uses it to show that its power-cut check
	// does catch a 2xx given before the data is on disk. Never set it in
	// production; no flag or setting reaches it.
	UnsafeNoSync bool
}

// Store is an open edge database.
type Store struct {
	db   *badger.DB
	stop context.CancelFunc
	wg   sync.WaitGroup

	once sync.Once
	err  error
}

// Open opens or creates the database in opts.Dir (a kv.ErrLocked error
// when another process holds it) and starts its value-log GC.
func Open(opts Options) (*Store, error) {
	if opts.Profile == "" {
		opts.Profile = kv.Small
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := kv.OpenWith(kv.Options(opts.Dir, opts.Profile, opts.Logger).WithSyncWrites(!opts.UnsafeNoSync))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{db: db, stop: cancel}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); kv.RunGC(ctx, db, opts.GCInterval, opts.Logger) }()
	return s, nil
}

// DB is the database, for the packages built on it.
func (s *Store) DB() *badger.DB { return s.db }

// Close stops the GC and closes the database; close what uses it first.
// Closing twice is harmless.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.stop()
		s.wg.Wait()
		if err := s.db.Close(); err != nil {
			s.err = fmt.Errorf("close edge store: %w", err)
		}
	})
	return s.err
}
