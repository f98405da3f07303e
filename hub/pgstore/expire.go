package pgstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"linli/hub/store"
	"linli/shared/event"
)

// Expire deletes the stored events e names, at most e.Batch a
// transaction, reading at most e.Scan a statement in key order, and
// returns how many of each kind it deleted (store.Store.Expire on
// Badger). Device records are not touched: their acked marks still cover
// the deleted seqs. It stops early, with what it did so far, when stop
// returns true.
func (s *Store) Expire(e store.Expiry, stop func() bool) (map[event.Kind]int, error) {
	if e.Batch <= 0 {
		e.Batch = 1000
	}
	if e.Scan <= 0 {
		e.Scan = 50 * e.Batch
	}
	deleted := map[event.Kind]int{}
	after := row{}
	for {
		if stop != nil && stop() {
			return deleted, nil
		}
		gone, kinds, next, done, err := s.expireSome(e, after)
		if err != nil {
			return deleted, fmt.Errorf("delete expired events: %w", err)
		}
		if len(gone) > 0 {
			if err := s.deleteEvents(gone); err != nil {
				return deleted, fmt.Errorf("delete expired events: %w", err)
			}
			for _, k := range kinds {
				deleted[k]++
			}
		}
		if done {
			return deleted, nil
		}
		after = next
	}
}

// expireSome reads events after the key of after and picks up to e.Batch
// to delete; next is the last event it looked at, done that it read the
// last stored.
func (s *Store) expireSome(e store.Expiry, after row) (gone []row, kinds []event.Kind, next row, done bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT site, device, seq, body FROM events
		WHERE (site, device, seq) > ($1, $2, $3) ORDER BY site, device, seq LIMIT $4`,
		after.site, after.device, after.seq, e.Scan)
	if err != nil {
		return nil, nil, row{}, false, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.site, &r.device, &r.seq, &r.body); err != nil {
			return nil, nil, row{}, false, err
		}
		n++
		next = row{site: r.site, device: r.device, seq: r.seq}
		ev, err := event.DecodeEvent(r.body)
		if err != nil {
			s.log.Warn("stored event undecodable; kept", "site", r.site, "device", r.device, "seq", r.seq, "err", err)
			continue
		}
		ev.Device = r.device
		cut, ok := e.Before[ev.Kind]
		if !ok || !ev.HLC.Time().Before(cut) || e.Keep != nil && e.Keep(r.site, &ev) {
			continue
		}
		gone = append(gone, row{site: r.site, device: r.device, seq: r.seq})
		kinds = append(kinds, ev.Kind)
		if len(gone) == e.Batch {
			return gone, kinds, next, false, nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, row{}, false, err
	}
	return gone, kinds, next, n < e.Scan, nil
}

// deleteEvents deletes the rows' events in one transaction.
func (s *Store) deleteEvents(gone []row) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	sites, devices, seqs, _ := columns(gone)
	_, err := s.pool.Exec(ctx, `DELETE FROM events WHERE (site, device, seq) IN
		(SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]))`, sites, devices, seqs)
	return err
}

// LastExpiryPass is when the last complete expiry pass started; zero when
// none was.
func (s *Store) LastExpiryPass() (time.Time, error) { return store.LastExpiryPass(s) }

// RecordExpiryPass records that a complete expiry pass started at t.
func (s *Store) RecordExpiryPass(t time.Time) error { return store.RecordExpiryPass(s, t) }

// ScanEvents reads up to limit stored events of site (every site when
// empty) in key order (site, device, seq) from cursor on: nil at the
// start, then the next value it returned (an event key, as the Badger
// store's); next is nil after the last.
func (s *Store) ScanEvents(site string, cursor []byte, limit int) (evs []store.SiteEvent, next []byte, err error) {
	from := row{site: site}
	if cursor != nil {
		cs, cd, seq, ok := store.ParseEventKey(cursor)
		if !ok || seq > math.MaxInt64 {
			return nil, nil, fmt.Errorf("scan events: cursor %q is not an event key", cursor)
		}
		from = row{site: cs, device: cd, seq: int64(seq)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT site, device, seq, body FROM events
		WHERE (site, device, seq) >= ($1, $2, $3) AND ($4 = '' OR site = $4)
		ORDER BY site, device, seq LIMIT $5`, from.site, from.device, from.seq, site, limit+1)
	if err != nil {
		return nil, nil, fmt.Errorf("scan events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.site, &r.device, &r.seq, &r.body); err != nil {
			return nil, nil, fmt.Errorf("scan events: %w", err)
		}
		if len(evs) == limit {
			return evs, store.EventKey(r.site, r.device, uint64(r.seq)), nil
		}
		ev, err := event.DecodeEvent(r.body)
		if err != nil {
			return nil, nil, fmt.Errorf("event %s/%s/%d: %w", r.site, r.device, r.seq, err)
		}
		ev.Device = r.device
		evs = append(evs, store.SiteEvent{Site: r.site, Event: ev})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("scan events: %w", err)
	}
	return evs, nil, nil
}
