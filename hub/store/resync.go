package store

import (
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// prefixResynced marks the devices that have taken a downlink snapshot
// since the store was restored: meta/resynced/{site}/{device}.
const prefixResynced = "meta/resynced/"

// Resync tracks which devices must be sent a downlink snapshot at their
// next hello. After a restore an edge's downlink cursor may count changes
// the restored hub never had (published after the backup); once the
// hub's head comes back to that cursor the two cannot be told apart by
// seq, and the edge would skip the hub's new changes as seen. So every
// device gets one snapshot after a restore, whatever cursor it reports.
type Resync struct {
	s        *Store
	restored bool

	mu   sync.Mutex
	done map[string]bool // site/device
}

// Resync loads the marks.
func (s *Store) Resync() (*Resync, error) {
	r := &Resync{s: s, done: map[string]bool{}}
	_, err := s.LastRestore()
	switch {
	case errors.Is(err, ErrNotFound):
		return r, nil
	case err != nil:
		return nil, err
	}
	r.restored = true
	err = s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix, o.PrefetchValues = []byte(prefixResynced), false
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			r.done[string(it.Item().Key()[len(prefixResynced):])] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load resync marks: %w", err)
	}
	return r, nil
}

// Needs reports whether the device must get a snapshot: the store was
// restored and the device has not taken one since.
func (r *Resync) Needs(site, device string) bool {
	if !r.restored {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.done[site+"/"+device]
}

// Done records that the device has applied a snapshot.
func (r *Resync) Done(site, device string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.restored || r.done[site+"/"+device] {
		return nil
	}
	if err := r.s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(prefixResynced+site+"/"+device), nil)
	}); err != nil {
		return fmt.Errorf("record resync of %s: %w", device, err)
	}
	r.done[site+"/"+device] = true
	return nil
}
