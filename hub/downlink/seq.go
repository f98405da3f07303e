package downlink

import (
	"errors"
	"fmt"

	"linli/hub/store"
	"linli/shared/kv"
)

// Seq is the change seq of the newest change of a site-wide entity (a
// notice, an activity) in the site's log. A device whose downlink cursor
// has reached it holds that version: this is how the dashboard tells which
// kiosks have received a notice.
func (l *Log) Seq(site, entity, id string) (uint64, bool) {
	seq, ok, err := l.StoredSeq(site, entity, id)
	if err != nil {
		l.log.Warn("read downlink index", "site", site, "entity", entity, "id", id, "err", err)
		return 0, false
	}
	return seq, ok
}

// StoredSeq is Seq as the store has it, with the error of reading it.
// Every worker of a district reads the same stored index, so it answers
// for sites whose log another worker writes too.
func (l *Log) StoredSeq(site, entity, id string) (uint64, bool, error) {
	var seq uint64
	err := l.db.View(func(v store.View) error {
		val, _, err := v.Get(indexKey(site, entityKey(entity, id, "")))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		seq = kv.ParseU64(val)
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("read downlink index of %s: %w", site, err)
	}
	return seq, seq != 0, nil
}
