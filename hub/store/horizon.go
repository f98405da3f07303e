package store

import (
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
)

// Keys of the backup horizon:
//
//	meta/backups                    present once any backup completed here
//	meta/horizon/{site}/{device}    highest seq of the device a completed backup covers
//	meta/horizon/{site}/{device}@{base}
//	                                the same within the seqs numbered above base
//	                                (a device replaced under the same id numbers
//	                                above a base of its own)
const (
	keyBackups    = "meta/backups"
	prefixHorizon = "meta/horizon/"
)

// Horizon is, per device, the highest seq that a completed and checked
// backup of this hub covers. Edges keep acked events above it whatever
// their retention says: a hub restored from that backup would need them.
// A hub that takes no backups has no horizon, and edges go by retention
// alone.
type Horizon struct {
	s *Store

	mu      sync.Mutex
	enabled bool              // backups configured, or one completed here
	marks   map[string]uint64 // site/device
}

// Horizon loads the horizon. enabled says that backups are configured, so
// devices no backup covered yet get a horizon of 0 (keep everything).
func (s *Store) Horizon(enabled bool) (*Horizon, error) {
	h := &Horizon{s: s, enabled: enabled, marks: map[string]uint64{}}
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(keyBackups)); err == nil {
			h.enabled = true
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte(prefixHorizon)
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key()[len(prefixHorizon):])
			if err := it.Item().Value(func(v []byte) error { h.marks[k] = kv.ParseU64(v); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load backup horizon: %w", err)
	}
	return h, nil
}

// Of is the device's horizon within the seqs numbered above base (0: the
// id's first device; a replacement numbers above a base of its own, and
// the backup covers its range only as far as it held it contiguously); ok
// is false when the hub takes no backups.
func (h *Horizon) Of(site, device string, base uint64) (seq uint64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.enabled {
		return 0, false
	}
	seq, found := h.marks[markKey(site, device, base)]
	if !found {
		return base, true // nothing of this range covered yet
	}
	return seq, true
}

// markKey names a device's mark within the seqs above base. '@' is not
// allowed in ids.
func markKey(site, device string, base uint64) string {
	if base == 0 {
		return site + "/" + device
	}
	return fmt.Sprintf("%s/%s@%d", site, device, base)
}

// Marks are the acked seqs of every device at one moment: what a backup
// taken from then on covers. Besides each device's acked seq they hold,
// for each range it holds beyond it, the range's end under the seq below
// its start: a replacement's range starts right above its base, so its
// mark is found under that base (see Horizon.Of).
type Marks map[string]uint64 // site/device, site/device@base

// AckedMarks reads every device's acked seq in one transaction. Read
// before a backup's stream starts, they are no higher than what the
// stream holds: acked only grows, and the stream reads later.
func (s *Store) AckedMarks() (Marks, error) {
	recs, err := s.Devices()
	if err != nil {
		return nil, fmt.Errorf("read acked marks: %w", err)
	}
	m := Marks{}
	for _, d := range recs {
		m[markKey(d.Site, d.ID, 0)] = d.Acked
		for _, r := range d.Above {
			m[markKey(d.Site, d.ID, r.From-1)] = r.To
		}
	}
	return m, nil
}

// Covered records that a completed, checked backup covers m. A backup
// that failed its check must not call it.
func (h *Horizon) Covered(m Marks) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := writeHorizon(h.s.db, m); err != nil {
		return err
	}
	h.enabled = true
	for k, v := range m {
		h.marks[k] = v
	}
	return nil
}

// writeHorizon stores m as the horizon (replacing the marks it names) and
// notes that this hub takes backups.
func writeHorizon(db *badger.DB, m Marks) error {
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	if err := wb.Set([]byte(keyBackups), nil); err != nil {
		return fmt.Errorf("record backup horizon: %w", err)
	}
	for k, v := range m {
		if err := wb.Set([]byte(prefixHorizon+k), kv.U64(v)); err != nil {
			return fmt.Errorf("record backup horizon: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("record backup horizon: %w", err)
	}
	return nil
}
