package downlink

import (
	"fmt"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/wire"
)

// Seq is the change seq of the newest change of a site-wide entity (a
// notice, an activity) in the site's log. A device whose downlink cursor
// has reached it holds that version: this is how the dashboard tells which
// kiosks have received a notice.
func (l *Log) Seq(site, entity, id string) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seq, ok := l.index[site][entityKey(entity, id, "")]
	return seq, ok
}

// StoredSeq is Seq as the store has it, for a site whose log another hub
// writes (a worker of a district answering for a site it does not hold):
// it reads the site's log, which holds one change per entity.
func (l *Log) StoredSeq(site, entity, id string) (uint64, bool, error) {
	var seq uint64
	found := false
	err := l.db.View(func(v store.View) error {
		return v.Scan([]byte(prefix+site+"/"), nil, 0, func(key, val []byte, _ uint64) (bool, error) {
			var c wire.Change
			if err := event.UnmarshalOwn(val, &c); err != nil {
				return false, fmt.Errorf("change %q: %w", key, err)
			}
			if c.Entity == entity && c.ID == id && c.Device == "" && c.Seq >= seq {
				seq, found = c.Seq, true
			}
			return true, nil
		})
	})
	if err != nil {
		return 0, false, fmt.Errorf("read downlink log of %s: %w", site, err)
	}
	return seq, found, nil
}
