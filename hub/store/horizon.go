package store

import (
	"errors"
	"fmt"
	"sync"

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
	b Backend

	mu      sync.Mutex
	enabled bool              // backups configured, or one completed here
	marks   map[string]uint64 // site/device
}

// Horizon loads the horizon. enabled says that backups are configured, so
// devices no backup covered yet get a horizon of 0 (keep everything).
func (s *Store) Horizon(enabled bool) (*Horizon, error) { return OpenHorizon(s, enabled) }

// OpenHorizon loads the horizon kept in b (see Store.Horizon).
func OpenHorizon(b Backend, enabled bool) (*Horizon, error) {
	h := &Horizon{b: b, enabled: enabled, marks: map[string]uint64{}}
	err := b.View(func(v View) error {
		if _, _, err := v.Get([]byte(keyBackups)); err == nil {
			h.enabled = true
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return v.Scan([]byte(prefixHorizon), nil, 0, func(key, val []byte, _ uint64) (bool, error) {
			h.marks[string(key[len(prefixHorizon):])] = kv.ParseU64(val)
			return true, nil
		})
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
func (s *Store) AckedMarks() (Marks, error) { return AckedMarks(s) }

// AckedMarks reads every device's acked seq in b (see Store.AckedMarks).
func AckedMarks(b Backend) (Marks, error) {
	recs, err := b.Devices()
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
	if err := writeHorizon(h.b, m); err != nil {
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
func writeHorizon(b Backend, m Marks) error {
	wb := b.NewBatch()
	wb.Set([]byte(keyBackups), []byte{})
	for k, v := range m {
		wb.Set([]byte(prefixHorizon+k), kv.U64(v))
	}
	if err := wb.Commit(); err != nil {
		return fmt.Errorf("record backup horizon: %w", err)
	}
	return nil
}
