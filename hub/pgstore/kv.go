package pgstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/wire"
)

// Projector turns the downlink changes of a batch into writes for
// queryable tables: called when the batch is filled (off the commit's
// path), with exactly the site and changes downlink.Append was given; the
// write it returns (nil: nothing to write) runs inside the batch's own
// transaction, so the tables commit with the facts and the log entries
// they come from, or not at all. An error of either fails the commit
// (nothing of the batch is stored, nothing acked).
type Projector func(site string, changes []wire.Change) (ProjectWrite, error)

// ProjectWrite is a projection's write inside a commit's transaction.
type ProjectWrite func(ctx context.Context, tx pgx.Tx) error

// SetProjector sets the projector every later batch calls (nil: none).
func (s *Store) SetProjector(p Projector) { s.projector.Store(&p) }

// project prepares a batch's projection of site's changes.
func (s *Store) project(site string, changes []wire.Change) (ProjectWrite, error) {
	pp := s.projector.Load()
	if pp == nil || *pp == nil {
		return nil, nil
	}
	w, err := (*pp)(site, changes)
	if err != nil {
		return nil, fmt.Errorf("project downlink changes of %s: %w", site, err)
	}
	return w, nil
}

var _ store.Backend = (*Store)(nil)

// Fence is called inside the transaction of every commit, once for each
// site the commit writes (in site order), before anything of it is
// written: an error rolls the whole commit back, so nothing of it is
// stored and nothing acked. A hub sharing its sites with other workers
// checks its lease on the site there (lease.Manager.Fence).
type Fence func(ctx context.Context, tx pgx.Tx, site string) error

// fenceSlot holds the fence and how to tell a keyed record's site.
type fenceSlot = atomic.Pointer[fencing]

type fencing struct {
	fence   Fence
	keySite func(key []byte) string
}

// SetFence sets the fence every later commit calls (nil: none). keySite
// names the site of a keyed record (Set, Delete), "" for the hub-wide
// ones: the merged state's facts and the downlink's entries are per
// site, as are the events, device records and projected changes a batch
// writes.
func (s *Store) SetFence(f Fence, keySite func(key []byte) string) {
	if f == nil {
		s.fencing.Store(nil)
		return
	}
	s.fencing.Store(&fencing{fence: f, keySite: keySite})
}

// FenceIdleTimeout ends, on the server, a fenced commit whose worker
// stops talking in the middle of it (cut off from the database): the
// lease rows the commit locked would otherwise stay locked until TCP gave
// up on the connection, hours later, and no other worker could take the
// sites. A commit sends its statements back to back, so it is never idle
// this long while its worker can reach the database.
const FenceIdleTimeout = 3 * time.Second

// fence calls the fence for each site the batch writes.
func (s *Store) fence(ctx context.Context, tx pgx.Tx, b *Batch) error {
	fc := s.fencing.Load()
	if fc == nil {
		return nil
	}
	return s.fenceSites(ctx, tx, b.sites(fc.keySite))
}

// fenceSites is fence for the sites named.
func (s *Store) fenceSites(ctx context.Context, tx pgx.Tx, sites []string) error {
	fc := s.fencing.Load()
	if fc == nil || len(sites) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = %d", FenceIdleTimeout.Milliseconds())); err != nil {
		return fmt.Errorf("bound the fenced commit: %w", err)
	}
	for _, site := range sites {
		if err := fc.fence(ctx, tx, site); err != nil {
			return fmt.Errorf("fence site %s: %w", site, err)
		}
	}
	return nil
}

// projectorSlot holds the projector for the batches to load.
type projectorSlot = atomic.Pointer[Projector]

// writeKV upserts and deletes the batch's keyed records in key order (so
// concurrent commits sharing keys wait on each other rather than
// deadlock). The records a commit writes take one version, the next
// value of the sequence (taken once: a nextval per row was a sixth of
// the statement's server CPU); readers ask for versions above a mark, and
// a commit's records become visible together.
func writeKV(ctx context.Context, tx pgx.Tx, kv map[string][]byte) error {
	if len(kv) == 0 {
		return nil
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var setK, setV, delK [][]byte
	for _, k := range keys {
		if v := kv[k]; v != nil {
			setK, setV = append(setK, []byte(k)), append(setV, v)
		} else {
			delK = append(delK, []byte(k))
		}
	}
	if len(delK) > 0 {
		if _, err := tx.Exec(ctx, "DELETE FROM hub_kv WHERE key = ANY($1::bytea[])", delK); err != nil {
			return fmt.Errorf("delete %d records: %w", len(delK), err)
		}
	}
	if len(setK) > 0 {
		_, err := tx.Exec(ctx, `INSERT INTO hub_kv (key, value, version)
			SELECT k, v, (SELECT nextval('hub_kv_version')) FROM unnest($1::bytea[], $2::bytea[]) AS t(k, v)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version`, setK, setV)
		if err != nil {
			return fmt.Errorf("store %d records: %w", len(setK), err)
		}
	}
	return nil
}

// ReadMark is the next value of the record version sequence: every record
// committed so far has a lower version, every one written later a higher.
// (A transaction that took its versions before and commits after would
// be below it: the merged state takes its mark while no fact write is
// under way.)
func (s *Store) ReadMark() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	var v int64
	if err := s.pool.QueryRow(ctx, "SELECT nextval('hub_kv_version')").Scan(&v); err != nil {
		return 0, fmt.Errorf("read mark: %w", err)
	}
	return uint64(v), nil
}

// View runs fn in one read-only REPEATABLE READ transaction: every read
// sees the same committed state. Each statement is bounded by the
// server's statement_timeout; a view over years of facts (a start) reads
// page by page and may take longer than one statement's bound.
func (s *Store) View(fn func(store.View) error) error {
	ctx := context.Background()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only: nothing to undo
	return fn(&view{ctx: ctx, tx: tx})
}

type view struct {
	ctx context.Context
	tx  pgx.Tx

	// The events of one device read last, from seq lo to hi (all of the
	// device's from lo on when full): facts name events in key order, so
	// one query serves many.
	site, device string
	lo, hi       uint64
	full         bool
	evs          []event.Event
}

func (v *view) Get(key []byte) ([]byte, uint64, error) {
	var val []byte
	var ver int64
	err := v.tx.QueryRow(v.ctx, "SELECT value, version FROM hub_kv WHERE key = $1", key).Scan(&val, &ver)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, store.ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %q: %w", key, err)
	}
	return val, uint64(ver), nil
}

// scanPage is how many records one statement of a Scan reads.
const scanPage = 1000

type kvRow struct {
	key, val []byte
	version  uint64
}

func (v *view) Scan(prefix, from []byte, since uint64, fn func(key, val []byte, version uint64) (bool, error)) error {
	if from == nil || bytes.Compare(from, prefix) < 0 {
		from = prefix
	}
	end := store.PrefixEnd(prefix)
	if since > math.MaxInt64 {
		return nil
	}
	for {
		// A page is read whole before fn runs: fn may read (Event) on the
		// same connection, which one open result would hold.
		page, err := v.page(from, end, int64(since))
		if err != nil {
			return err
		}
		for _, r := range page {
			more, err := fn(r.key, r.val, r.version)
			if err != nil || !more {
				return err
			}
		}
		if len(page) < scanPage {
			return nil
		}
		from = append(page[len(page)-1].key, 0) // the least key above the last
	}
}

// factsOnly bounds a read of facts by version to the rows of the partial
// index on version (migration 13) as constants: a plan made without the
// parameters' values (a URL's plan_cache_mode) may then use it too.
const factsOnly = ` AND key >= '` + store.PrefixFact + `'::bytea AND key < '` + factsEnd + `'::bytea`

// factsEnd is store.PrefixEnd(store.PrefixFact).
const factsEnd = "f0"

func (v *view) page(from, end []byte, since int64) ([]kvRow, error) {
	var rows pgx.Rows
	var err error
	if since > 0 && bytes.HasPrefix(from, []byte(store.PrefixFact)) && end != nil && bytes.Compare(end, []byte(factsEnd)) <= 0 {
		rows, err = v.tx.Query(v.ctx, `SELECT key, value, version FROM hub_kv
			WHERE key >= $1 AND key < $2 AND version > $3`+factsOnly+` ORDER BY key LIMIT $4`, from, end, since, scanPage)
	} else if end == nil {
		rows, err = v.tx.Query(v.ctx, `SELECT key, value, version FROM hub_kv
			WHERE key >= $1 AND version > $2 ORDER BY key LIMIT $3`, from, since, scanPage)
	} else {
		rows, err = v.tx.Query(v.ctx, `SELECT key, value, version FROM hub_kv
			WHERE key >= $1 AND key < $2 AND version > $3 ORDER BY key LIMIT $4`, from, end, since, scanPage)
	}
	if err != nil {
		return nil, fmt.Errorf("scan from %q: %w", from, err)
	}
	defer rows.Close()
	out := make([]kvRow, 0, scanPage)
	for rows.Next() {
		var r kvRow
		var ver int64
		if err := rows.Scan(&r.key, &r.val, &ver); err != nil {
			return nil, fmt.Errorf("scan from %q: %w", from, err)
		}
		r.version = uint64(ver)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("scan from %q: %w", from, err)
	}
	return out, nil
}

// eventPage is how many events of a device one read of Event takes.
const eventPage = 512

func (v *view) Event(site, device string, seq uint64) (event.Event, error) {
	if seq > math.MaxInt64 {
		return event.Event{}, store.ErrNotFound
	}
	if !(site == v.site && device == v.device && seq >= v.lo && (v.full || seq <= v.hi)) {
		if err := v.readEvents(site, device, seq); err != nil {
			return event.Event{}, err
		}
	}
	i, ok := sort.Find(len(v.evs), func(i int) int { return cmp.Compare(seq, v.evs[i].Seq) })
	if !ok {
		return event.Event{}, store.ErrNotFound
	}
	return v.evs[i], nil
}

// readEvents reads a page of device's events from seq on.
func (v *view) readEvents(site, device string, seq uint64) error {
	rows, err := v.tx.Query(v.ctx, `SELECT seq, body FROM events
		WHERE site = $1 AND device = $2 AND seq >= $3 ORDER BY seq LIMIT $4`, site, device, int64(seq), eventPage)
	if err != nil {
		return fmt.Errorf("read events of %s/%s: %w", site, device, err)
	}
	defer rows.Close()
	evs := v.evs[:0]
	for rows.Next() {
		var s int64
		var body []byte
		if err := rows.Scan(&s, &body); err != nil {
			return fmt.Errorf("read events of %s/%s: %w", site, device, err)
		}
		ev, err := event.DecodeEvent(body)
		if err != nil {
			return fmt.Errorf("event %s/%s/%d: %w", site, device, s, err)
		}
		ev.Device = device
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read events of %s/%s: %w", site, device, err)
	}
	v.site, v.device, v.lo, v.evs = site, device, seq, evs
	v.full = len(evs) < eventPage
	v.hi = seq
	if n := len(evs); n > 0 {
		v.hi = evs[n-1].Seq
	}
	return nil
}
