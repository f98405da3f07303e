package store

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/kv"
)

// keyExpiryPass holds when the last complete pass of Expire started
// (Unix milliseconds, decimal text).
const keyExpiryPass = "meta/expiry-pass"

// LastExpiryPass is when the last complete expiry pass recorded with
// RecordExpiryPass started; zero when none was.
func (s *Store) LastExpiryPass() (time.Time, error) { return LastExpiryPass(s) }

// LastExpiryPass is when the last complete expiry pass recorded in b
// started; zero when none was.
func LastExpiryPass(b Backend) (time.Time, error) {
	var t time.Time
	err := b.View(func(v View) error {
		val, _, err := v.Get([]byte(keyExpiryPass))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ms, err := strconv.ParseInt(string(val), 10, 64)
		if err != nil {
			return fmt.Errorf("stored %q is not a time: %w", val, err)
		}
		t = time.UnixMilli(ms)
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("read last expiry pass: %w", err)
	}
	return t, nil
}

// RecordExpiryPass records that a complete expiry pass started at t, so a
// restarted hub waits for the next one instead of reading every stored
// event again at once.
func (s *Store) RecordExpiryPass(t time.Time) error { return RecordExpiryPass(s, t) }

// RecordExpiryPass records in b that a complete expiry pass started at t.
func RecordExpiryPass(b Backend, t time.Time) error {
	wb := b.NewBatch()
	wb.Set([]byte(keyExpiryPass), []byte(strconv.FormatInt(t.UnixMilli(), 10)))
	if err := wb.Commit(); err != nil {
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

// Expire deletes the stored events e names, a batch per transaction, and
// returns how many of each kind it deleted. Device records are not
// touched: their acked marks still cover the deleted seqs, so an edge is
// never asked for them again and a resend is dropped as a duplicate. It
// stops early, with what it did so far, when stop returns true. An event
// stored in a run with others is taken out of the run, which is written
// again with the rest (or deleted when nothing is left).
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
		var (
			next  []byte
			kinds []event.Kind
		)
		// Read and rewrite in one transaction, and not while an erasure
		// rewrites runs: a run written back from an older read would undo
		// it.
		s.rewriteMu.Lock()
		err := s.db.Update(func(txn *badger.Txn) error {
			var err error
			next, kinds, err = s.expireSome(txn, e, from)
			return err
		})
		s.rewriteMu.Unlock()
		if err != nil {
			return deleted, fmt.Errorf("delete expired events: %w", err)
		}
		for _, k := range kinds {
			deleted[k]++
		}
		if next == nil {
			return deleted, nil
		}
		from = next
	}
}

// expireRewrite bounds the bytes of runs one transaction of Expire writes
// back; half Badger's transaction limit bounds it further (the small
// profile's is a few hundred KiB).
const expireRewrite = 4 << 20

// expireSome deletes in txn, from key from on, up to e.Batch expired
// events, and returns their kinds and the key to go on from (nil at the
// end).
func (s *Store) expireSome(txn *badger.Txn, e Expiry, from []byte) (next []byte, kinds []event.Kind, err error) {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefixEvent)
	it := txn.NewIterator(opts)
	defer it.Close()
	written, read := 0, 0
	for it.Seek(from); it.Valid(); it.Next() {
		if len(kinds) >= e.Batch || read >= e.Scan || written >= min(expireRewrite, int(s.db.MaxBatchSize()/2)) {
			return it.Item().KeyCopy(nil), kinds, nil
		}
		item := it.Item()
		site, device, ok := splitEventKey(item.Key())
		if !ok {
			continue // not an event key this hub writes: leave it
		}
		evs, raws, run, err := storedRun(item, device)
		if err != nil {
			s.log.Warn("stored event undecodable; kept", "key", string(item.Key()), "err", err)
			continue
		}
		read += len(evs) // a run is read whole: the bound is approximate
		var keep [][]byte
		var gone []event.Kind
		for i := range evs {
			ev := &evs[i]
			cut, ok := e.Before[ev.Kind]
			if len(kinds)+len(gone) == e.Batch || !ok || !ev.HLC.Time().Before(cut) || e.Keep != nil && e.Keep(site, ev) {
				keep = append(keep, raws[i])
				continue
			}
			gone = append(gone, ev.Kind)
		}
		if len(gone) == 0 {
			continue
		}
		key := item.KeyCopy(nil)
		switch {
		case len(keep) == 0:
			err = txn.Delete(key)
		case !run:
			err = txn.Set(key, keep[0])
		default: // what is left of a run stays a run under the run's key
			val := event.AppendArray(nil, keep)
			written += len(val)
			err = txn.Set(key, val)
		}
		if err != nil {
			return nil, nil, err
		}
		kinds = append(kinds, gone...)
		if len(kinds) == e.Batch {
			// The run may hold more to delete: the next pass reads it again.
			return key, kinds, nil
		}
	}
	return nil, kinds, nil
}

// storedRun decodes what is stored at item like storedEvents, with each
// event's stored form (copies, valid after the transaction); run says
// whether it is stored as a run (an array), not alone.
func storedRun(item *badger.Item, device string) (evs []event.Event, raws [][]byte, run bool, err error) {
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, nil, false, err
	}
	if run = event.IsArray(v); run {
		evs, raws, err = event.UnmarshalArray(v)
	} else {
		var ev event.Event
		ev, err = event.DecodeEvent(v)
		evs, raws = []event.Event{ev}, [][]byte{v}
	}
	if err != nil {
		return nil, nil, false, err
	}
	for i := range evs {
		evs[i].Device = device
	}
	return evs, raws, run, nil
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
	// A cursor is the key of the next event to give, which may be inside
	// a run stored under a later key: the run's events before it were
	// given already.
	fromSite, fromDevice, fromSeq := "", "", uint64(0)
	if cs, cd, ok := splitEventKey(cursor); ok {
		fromSite, fromDevice, fromSeq = cs, cd, kv.ParseU64(cursor[len(cursor)-8:])
	}
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchSize = min(limit, 100)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(cursor); it.Valid(); it.Next() {
			site, device, ok := splitEventKey(it.Item().Key())
			if !ok {
				continue
			}
			run, err := storedEvents(it.Item(), device)
			if err != nil {
				return err
			}
			for _, ev := range run {
				if site == fromSite && device == fromDevice && ev.Seq < fromSeq {
					continue
				}
				if len(evs) == limit {
					next = EventKey(site, device, ev.Seq)
					return nil
				}
				evs = append(evs, SiteEvent{Site: site, Event: ev})
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scan events: %w", err)
	}
	return evs, next, nil
}

// ParseEventKey reads an event key, e/{site}/{device}/{seq:8} (an export's
// cursor).
func ParseEventKey(key []byte) (site, device string, seq uint64, ok bool) {
	if !bytes.HasPrefix(key, []byte(prefixEvent)) {
		return "", "", 0, false
	}
	if site, device, ok = splitEventKey(key); !ok {
		return "", "", 0, false
	}
	return site, device, kv.ParseU64(key[len(key)-8:]), true
}
