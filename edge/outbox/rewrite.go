package outbox

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
)

// Rewrite replaces the body of every stored event that f changes — a
// resident's records after a deletion request — a chunk of events per
// transaction, and returns how many it changed. Sequence numbers, kinds
// and timestamps stay: the hub has, or will get, the same rewritten facts.
func (l *Log) Rewrite(f func(ev *event.Event) (event.Body, bool)) (int, error) {
	// A journaled event not yet in Badger would be applied after the
	// rewrite, unchanged.
	if err := l.waitApplied(); err != nil {
		return 0, fmt.Errorf("rewrite events: %w", err)
	}
	const chunk = 500
	changed := 0
	var from uint64
	for {
		type edit struct {
			key, val []byte
		}
		var edits []edit
		var last uint64
		seen := 0
		err := l.db.View(func(txn *badger.Txn) error {
			it := eventIterator(txn)
			defer it.Close()
			for it.Seek(eventKey(from)); it.Valid() && seen < chunk; it.Next() {
				seen++
				item := it.Item()
				last = seqOf(item.Key())
				ev, _, err := storedEvent(item)
				if err != nil {
					return err
				}
				ev.Device = l.opts.Device
				body, ok := f(&ev)
				if !ok {
					continue
				}
				raw, err := event.Marshal(body)
				if err != nil {
					return err
				}
				ev.SetBody(raw)
				ev.Device = ""
				val, err := ev.Encode()
				if err != nil {
					return err
				}
				edits = append(edits, edit{item.KeyCopy(nil), val})
			}
			return nil
		})
		if err != nil {
			return changed, fmt.Errorf("rewrite events: %w", err)
		}
		if len(edits) > 0 {
			err = l.db.Update(func(txn *badger.Txn) error {
				for _, e := range edits {
					// Only events still stored: pruning may have taken one
					// since the read, and must not see it come back.
					if _, err := txn.Get(e.key); errors.Is(err, badger.ErrKeyNotFound) {
						continue
					} else if err != nil {
						return err
					}
					if err := txn.Set(e.key, e.val); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return changed, fmt.Errorf("rewrite events: %w", err)
			}
			changed += len(edits)
		}
		if seen < chunk {
			return changed, nil
		}
		from = last + 1
	}
}
