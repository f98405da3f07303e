package store

import (
	"errors"
	"fmt"
	"sync"
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
	b        Backend
	restored bool

	mu   sync.Mutex
	done map[string]bool // site/device
}

// Resync loads the marks.
func (s *Store) Resync() (*Resync, error) { return OpenResync(s) }

// OpenResync loads the marks kept in b.
func OpenResync(b Backend) (*Resync, error) {
	r := &Resync{b: b, done: map[string]bool{}}
	_, err := LastRestore(b)
	switch {
	case errors.Is(err, ErrNotFound):
		return r, nil
	case err != nil:
		return nil, err
	}
	r.restored = true
	err = b.View(func(v View) error {
		return v.Scan([]byte(prefixResynced), nil, 0, func(key, _ []byte, _ uint64) (bool, error) {
			r.done[string(key[len(prefixResynced):])] = true
			return true, nil
		})
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
	b := r.b.NewBatch()
	b.Set([]byte(prefixResynced+site+"/"+device), []byte{})
	if err := b.Commit(); err != nil {
		return fmt.Errorf("record resync of %s: %w", device, err)
	}
	r.done[site+"/"+device] = true
	return nil
}
