package store

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
)

// keyExpiryPass holds when the last complete pass of Expire started
// (Unix milliseconds, decimal text).
const keyExpiryPass = "meta/expiry-pass"

// LastExpiryPass is when the last complete expiry pass recorded with
// RecordExpiryPass started; zero when none was.
func (s *Store) LastExpiryPass() (time.Time, error) {
	var t time.Time
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyExpiryPass))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			ms, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return fmt.Errorf("stored %q is not a time: %w", v, err)
			}
			t = time.UnixMilli(ms)
			return nil
		})
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("read last expiry pass: %w", err)
	}
	return t, nil
}

// RecordExpiryPass records that a complete expiry pass started at t, so a
// restarted hub waits for the next one instead of reading every stored
// event again at once.
func (s *Store) RecordExpiryPass(t time.Time) error {
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyExpiryPass), []byte(strconv.FormatInt(t.UnixMilli(), 10)))
	}); err != nil {
		return fmt.Errorf("record expiry pass: %w", err)
	}
	return nil
}

// Expiry says which stored events one pass of Expire deletes: those of a
// kind in Before recorded (by their HLC time) before its cut-off, unless
// Keep holds on to them.
type Expiry struct {
	Before map[event.Kind]time.Time
	// Keep says that an event the cut-off would delete must stay: the
	// merged state refers to some events of expiring kinds (a forced door
	// is a fact and opens an alarm) and rebuilds from them at start.
	Keep func(site string, ev *event.Event) bool
	// Batch is the most deletions per transaction (default 1000), so a
	// first pass over years of readings neither builds one huge
	// transaction nor holds up ingest's commits for long.
	Batch int
	// Scan is the most events one transaction reads (default 50 ×
	// Batch). A pass reads every stored event, most of which it keeps:
	// unbounded, one transaction read all of years of history before
	// stop was asked again, and a hub holding ten million events took
	// longer than its stop grace to stop.
	Scan int
}

// eventHead is what a pass reads of every stored event: the body is
// decoded only for an event the cut-off would delete.
type eventHead struct {
	HLC  hlc.Timestamp `cbor:"3,keyasint"`
	Kind event.Kind    `cbor:"4,keyasint"`
}

// Expire deletes the stored events e names, a batch per transaction, and
// returns how many of each kind it deleted. Device records are not
// touched: their acked marks still cover the deleted seqs, so an edge is
// never asked for them again and a resend is dropped as a duplicate. It
// stops early, with what it did so far, when stop returns true.
func (s *Store) Expire(e Expiry, stop func() bool) (map[event.Kind]int, error) {
	if e.Batch <= 0 {
		e.Batch = 1000
	}
	if e.Scan <= 0 {
		e.Scan = 50 * e.Batch
	}
	deleted := map[event.Kind]int{}
	from := []byte(prefixEvent)
	for {
		if stop != nil && stop() {
			return deleted, nil
		}
		keys, kinds, next, err := s.expired(e, from)
		if err != nil {
			return deleted, err
		}
		if len(keys) > 0 {
			err := s.db.Update(func(txn *badger.Txn) error {
				for _, k := range keys {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return deleted, fmt.Errorf("delete expired events: %w", err)
			}
			for _, k := range kinds {
				deleted[k]++
			}
		}
		if next == nil {
			return deleted, nil
		}
		from = next
	}
}

// expired reads from key from on and returns up to e.Batch keys of events
// to delete, their kinds, and the key to go on from (nil at the end).
func (s *Store) expired(e Expiry, from []byte) (keys [][]byte, kinds []event.Kind, next []byte, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixEvent)
		// Values are inline in the tables: read in place, not copied
		// ahead into buffers that are garbage a moment later.
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		read := 0
		for it.Seek(from); it.Valid(); it.Next() {
			if len(keys) == e.Batch || read == e.Scan {
				next = it.Item().KeyCopy(nil)
				return nil
			}
			read++
			item := it.Item()
			var ev event.Event
			expired := false
			err := item.Value(func(v []byte) error {
				var h eventHead
				if err := event.UnmarshalOwn(v, &h); err != nil {
					return err
				}
				if cut, ok := e.Before[h.Kind]; !ok || !h.HLC.Time().Before(cut) {
					return nil
				}
				expired = true
				var err error
				ev, err = event.DecodeEvent(v)
				return err
			})
			if err != nil {
				s.log.Warn("stored event undecodable; kept", "key", string(item.Key()), "err", err)
				continue
			}
			if !expired {
				continue
			}
			site, device, ok := splitEventKey(item.Key())
			if !ok {
				continue // not an event key this hub writes: leave it
			}
			ev.Device = device
			if e.Keep != nil && e.Keep(site, &ev) {
				continue
			}
			keys = append(keys, item.KeyCopy(nil))
			kinds = append(kinds, ev.Kind)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("find expired events: %w", err)
	}
	return keys, kinds, next, nil
}

// splitEventKey reads the site and device of an event key,
// e/{site}/{device}/{seq:8}. Ids never hold a slash.
func splitEventKey(key []byte) (site, device string, ok bool) {
	rest := key[len(prefixEvent):]
	if len(rest) < 8+4 || rest[len(rest)-9] != '/' {
		return "", "", false
	}
	s, d, found := bytes.Cut(rest[:len(rest)-9], []byte("/"))
	if !found || len(s) == 0 || len(d) == 0 {
		return "", "", false
	}
	return string(s), string(d), true
}

// SiteEvent is a stored event with its site.
type SiteEvent struct {
	Site string
	event.Event
}

// ScanEvents reads up to limit stored events of site (every site when
// empty) in key order (site, device, seq) from cursor on, which is nil at
// the start and then the next value ScanEvents returned; next is nil
// after the last. Each call is its own short transaction, so a long
// export does not hold one open while a slow client reads.
func (s *Store) ScanEvents(site string, cursor []byte, limit int) (evs []SiteEvent, next []byte, err error) {
	prefix := []byte(prefixEvent)
	if site != "" {
		prefix = kv.Key(prefixEvent, []byte(site+"/"))
	}
	if cursor == nil {
		cursor = prefix
	}
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchSize = min(limit, 100)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(cursor); it.Valid(); it.Next() {
			if len(evs) == limit {
				next = it.Item().KeyCopy(nil)
				return nil
			}
			site, device, ok := splitEventKey(it.Item().Key())
			if !ok {
				continue
			}
			ev, err := storedEvent(it.Item(), device)
			if err != nil {
				return err
			}
			evs = append(evs, SiteEvent{Site: site, Event: ev})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scan events: %w", err)
	}
	return evs, next, nil
}
