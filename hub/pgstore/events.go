package pgstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/wire"
)

// Devices loads every device record.
func (s *Store) Devices() ([]store.DeviceRecord, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT site, id, record FROM devices ORDER BY site, id")
	if err != nil {
		return nil, fmt.Errorf("load device records: %w", err)
	}
	var out []store.DeviceRecord
	for rows.Next() {
		var site, id string
		var raw []byte
		if err := rows.Scan(&site, &id, &raw); err != nil {
			return nil, fmt.Errorf("load device records: %w", err)
		}
		var d store.DeviceRecord
		if err := event.UnmarshalOwn(raw, &d); err != nil {
			return nil, fmt.Errorf("device record %s/%s: %w", site, id, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load device records: %w", err)
	}
	return out, nil
}

// Events returns up to limit stored events of a device with seq > after,
// in seq order.
func (s *Store) Events(site, device string, after uint64, limit int) ([]event.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	if after >= math.MaxInt64 {
		return nil, nil // no stored seq is above it
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx,
		"SELECT seq, body FROM events WHERE site = $1 AND device = $2 AND seq > $3 ORDER BY seq LIMIT $4",
		site, device, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("read events of %s/%s: %w", site, device, err)
	}
	var out []event.Event
	for rows.Next() {
		var seq int64
		var body []byte
		if err := rows.Scan(&seq, &body); err != nil {
			return nil, fmt.Errorf("read events of %s/%s: %w", site, device, err)
		}
		ev, err := event.DecodeEvent(body)
		if err != nil {
			return nil, fmt.Errorf("event %s/%s/%d: %w", site, device, seq, err)
		}
		ev.Device = device
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events of %s/%s: %w", site, device, err)
	}
	return out, nil
}

type row struct {
	site, device string
	seq          int64
	body         []byte
	reason       string // quarantine only
}

func compareRows(a, b row) int {
	return cmp.Or(cmp.Compare(a.site, b.site), cmp.Compare(a.device, b.device), cmp.Compare(a.seq, b.seq))
}

type deviceKey struct{ site, id string }

// Batch is one group commit: the writes are kept in memory and go to the
// server in one transaction at Commit.
type Batch struct {
	s        *Store
	events   rowChunks
	quar     []row
	rewrites map[rowKey][]byte // RewriteEvent: the event's new stored form
	devices  map[deviceKey][]byte
	acked    map[deviceKey]int64
	kv       map[string][]byte // Set (a value) and Delete (nil)
	projects []projection
	err      error
	// early are the events StoreEvents sent ahead, nil before.
	early *earlyEvents
}

// earlyEvents are a batch's events stored ahead of its Commit, in a
// transaction of their own.
type earlyEvents struct {
	n     int      // events and quarantined events in it
	sites []string // their sites, which it fenced
	done  chan error
	err   error
	got   bool
}

// wait is the transaction's outcome, once it is known.
func (e *earlyEvents) wait() error {
	if !e.got {
		e.err, e.got = <-e.done, true
	}
	return e.err
}

type rowKey struct {
	site, device string
	seq          int64
}

type projection struct {
	site  string
	write ProjectWrite
}

// NewBatch starts a group commit.
func (s *Store) NewBatch() store.Batch { return s.newBatch() }

func (s *Store) newBatch() *Batch {
	return &Batch{s: s, devices: map[deviceKey][]byte{}, acked: map[deviceKey]int64{},
		rewrites: map[rowKey][]byte{}, kv: map[string][]byte{}}
}

// seq converts an event's seq to the column's bigint; the seqs above
// PostgreSQL's bigint are refused rather than wrapped.
func (b *Batch) seq(site string, ev *event.Event) (int64, bool) {
	if ev.Seq > math.MaxInt64 {
		if b.err == nil {
			b.err = fmt.Errorf("event %s/%s/%d: seq above %d, the largest PostgreSQL stores", site, ev.Device, ev.Seq, int64(math.MaxInt64))
		}
		return 0, false
	}
	return int64(ev.Seq), true
}

// PutEvent stores an event; one already stored under its site, device
// and seq is kept as it is.
func (b *Batch) PutEvent(site string, ev *event.Event, encoded []byte) {
	if seq, ok := b.seq(site, ev); ok {
		b.events.add(row{site: site, device: ev.Device, seq: seq, body: encoded})
	}
}

// rowChunks holds rows in blocks of rowChunk, copied once into one slice
// at the commit: grown by append a quarter at a time, the copies of a
// 20,000-event group's rows came to five times the rows, a fifth of the
// bytes the hub allocated in an ingest.
type rowChunks struct {
	chunks [][]row
	n      int
}

const rowChunk = 2048

func (c *rowChunks) add(r row) {
	if k := len(c.chunks); k == 0 || len(c.chunks[k-1]) == cap(c.chunks[k-1]) {
		c.chunks = append(c.chunks, make([]row, 0, min(rowChunk, max(64, c.n))))
	}
	c.chunks[len(c.chunks)-1] = append(c.chunks[len(c.chunks)-1], r)
	c.n++
}

// all is every row in the order added.
func (c *rowChunks) all() []row {
	if len(c.chunks) == 1 {
		return c.chunks[0]
	}
	out := make([]row, 0, c.n)
	for _, ch := range c.chunks {
		out = append(out, ch...)
	}
	return out
}

// Quarantine stores an event that failed validation, with the reason.
func (b *Batch) Quarantine(site string, ev *event.Event, encoded []byte, reason string) {
	if seq, ok := b.seq(site, ev); ok {
		b.quar = append(b.quar, row{site: site, device: ev.Device, seq: seq, body: encoded, reason: reason})
	}
}

// PutDevice stores a device record; the batch's last one of a device wins.
func (b *Batch) PutDevice(d *store.DeviceRecord) {
	val, err := event.Marshal(d)
	if err != nil {
		if b.err == nil {
			b.err = fmt.Errorf("encode device record %s: %w", d.ID, err)
		}
		return
	}
	if d.Acked > math.MaxInt64 {
		if b.err == nil {
			b.err = fmt.Errorf("device record %s: acked %d above PostgreSQL's bigint", d.ID, d.Acked)
		}
		return
	}
	k := deviceKey{d.Site, d.ID}
	b.devices[k] = val
	b.acked[k] = int64(d.Acked)
}

// RewriteEvent replaces the stored form of an event, or stores it.
func (b *Batch) RewriteEvent(site string, ev *event.Event, encoded []byte) {
	if seq, ok := b.seq(site, ev); ok {
		b.rewrites[rowKey{site, ev.Device, seq}] = encoded
	}
}

// Set stores a keyed record; the batch's last write of a key wins.
func (b *Batch) Set(key, val []byte) {
	if val == nil {
		val = []byte{} // nil is the batch's deletion, and NULL to pgx
	}
	b.kv[string(key)] = bytes.Clone(val)
}

// Delete removes a keyed record.
func (b *Batch) Delete(key []byte) { b.kv[string(key)] = nil }

// Get reads a key as of the batch: its own writes, else what is
// committed. A missing key is nil.
func (b *Batch) Get(key []byte) ([]byte, error) {
	if v, ok := b.kv[string(key)]; ok {
		return v, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.s.timeout)
	defer cancel()
	var v []byte
	err := b.s.pool.QueryRow(ctx, "SELECT value FROM hub_kv WHERE key = $1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", key, err)
	}
	return v, nil
}

// GetMany reads keys as Get does, the committed ones in one statement.
func (b *Batch) GetMany(keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	var ask [][]byte
	at := map[string][]int{}
	for i, k := range keys {
		if v, ok := b.kv[string(k)]; ok {
			out[i] = v
			continue
		}
		if _, ok := at[string(k)]; !ok {
			ask = append(ask, k)
		}
		at[string(k)] = append(at[string(k)], i)
	}
	if len(ask) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.s.timeout)
	defer cancel()
	rows, err := b.s.pool.Query(ctx, "SELECT key, value FROM hub_kv WHERE key = ANY($1::bytea[])", ask)
	if err != nil {
		return nil, fmt.Errorf("read %d records: %w", len(ask), err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("read %d records: %w", len(ask), err)
		}
		for _, i := range at[string(k)] {
			out[i] = v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %d records: %w", len(ask), err)
	}
	return out, nil
}

// Project hands the store's Projector the downlink changes of site, to
// run inside the batch's transaction at Commit.
func (b *Batch) Project(site string, changes []wire.Change) {
	w, err := b.s.project(site, changes)
	if err != nil {
		if b.err == nil {
			b.err = err
		}
		return
	}
	// The site is kept without a write too: it is fenced like the rest.
	b.projects = append(b.projects, projection{site: site, write: w})
}

// Len is the number of writes in the batch.
func (b *Batch) Len() int {
	n := b.events.n + len(b.quar) + len(b.devices) + len(b.rewrites) + len(b.kv)
	if b.early != nil {
		n += b.early.n
	}
	return n
}

// sites lists, sorted, the sites the batch writes: of its events,
// quarantined and rewritten events, device records, projected changes,
// and the keyed records keySite names a site for.
func (b *Batch) sites(keySite func(key []byte) string) []string {
	set := map[string]bool{}
	for _, ch := range b.events.chunks {
		for _, r := range ch {
			set[r.site] = true
		}
	}
	for _, r := range b.quar {
		set[r.site] = true
	}
	if b.early != nil {
		for _, s := range b.early.sites {
			set[s] = true
		}
	}
	for k := range b.rewrites {
		set[k.site] = true
	}
	for k := range b.devices {
		set[k.site] = true
	}
	for _, p := range b.projects {
		set[p.site] = true
	}
	if keySite != nil {
		for k := range b.kv {
			set[keySite([]byte(k))] = true
		}
	}
	delete(set, "")
	return slices.Sorted(maps.Keys(set))
}

// Discard abandons the batch. Events StoreEvents sent ahead may be
// stored: nothing acks them, and the edge's resend keeps them once.
func (b *Batch) Discard() {
	b.events, b.quar, b.devices, b.rewrites, b.kv, b.projects = rowChunks{}, nil, nil, nil, nil, nil
}

// Commit writes the batch, durable when it returns nil (with a
// synchronous standby: on the standby too). Rows go in key order, so
// concurrent commits that share keys wait on each other instead of
// deadlocking. The batch is idempotent (stored events are kept, device
// records replaced by the same), so a commit whose outcome is unknown
// (its connection died, PostgreSQL restarted or failed over) is run again
// until it is known or the store's timeout ends.
//
// A batch of splitEventsMin events or more is two transactions on two
// connections, run side by side so that the server works on both at once
// (a backend is one process: one transaction uses one core): the events
// and quarantined events in one; device records, keyed records and
// projected rows in the other, which commits only after the first did.
// A crash or failure between the two leaves events stored that no device
// record covers; they are not acked, the edge sends them again, and
// storing them again keeps the first copy (the same as a resend after a
// commit whose outcome was unknown). The facts, which name events, are
// never committed without them. Both transactions fence the batch's
// sites. StoreEvents starts the events' transaction before Commit. A
// batch that rewrites events (an erasure) is one transaction, unless its
// events went ahead: then the rewrites go with the rest, which starts
// once those events are stored.
func (b *Batch) Commit() error {
	if b.err != nil {
		if b.early != nil {
			_ = b.early.wait() // let the events' transaction end
		}
		return b.err
	}
	if b.Len() == 0 && len(b.projects) == 0 && b.early == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.s.timeout)
	defer cancel()
	events, quar := sortedOnce(b.events.all()), sortedOnce(b.quar)
	var err error
	switch {
	case b.early != nil:
		// The events went ahead (StoreEvents); any put since go with the
		// rest.
		err = b.commitAfter(ctx, b.early, events, quar)
	case len(events) >= splitEventsMin && len(b.rewrites) == 0:
		err = b.commitAfter(ctx, b.storeAhead(events, quar), nil, nil)
	default:
		err = b.s.commitIdempotent(ctx, func(ctx context.Context, tx pgx.Tx) error {
			if err := b.writeEvents(ctx, tx, events, quar); err != nil {
				return err
			}
			return b.writeRest(ctx, tx)
		})
	}
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// StoreEvents sends the events and quarantined events put so far ahead
// of the rest of the batch: they go in a transaction of their own, now,
// on a connection of their own, while the caller goes on filling the
// batch (the ingest merges the group meanwhile); Commit commits the rest
// only after they are stored, as it does a split commit's (see Commit).
// A batch of fewer than splitEventsMin events waits for Commit. Called
// once, after the group's events are put; events put later go with the
// rest.
func (b *Batch) StoreEvents() {
	if b.err != nil || b.early != nil || b.events.n < splitEventsMin {
		return
	}
	events, quar := sortedOnce(b.events.all()), sortedOnce(b.quar)
	b.early = b.storeAhead(events, quar)
	b.events, b.quar = rowChunks{}, nil
}

// storeAhead starts the transaction that stores events and quar.
func (b *Batch) storeAhead(events, quar []row) *earlyEvents {
	e := &earlyEvents{n: len(events) + len(quar), done: make(chan error, 1)}
	set := map[string]bool{}
	for _, rs := range [][]row{events, quar} {
		for _, r := range rs {
			set[r.site] = true
		}
	}
	e.sites = slices.Sorted(maps.Keys(set))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.s.timeout)
		defer cancel()
		e.done <- b.s.commitIdempotent(ctx, func(ctx context.Context, tx pgx.Tx) error {
			// The fence goes first, as in writeEvents.
			if err := b.s.fenceSites(ctx, tx, e.sites); err != nil {
				return err
			}
			return insertNew(ctx, tx, events, quar)
		})
	}()
	return e
}

// commitAfter commits the rest of the batch (with events and quar, put
// after e started) once e's events are stored: the facts, which name
// events, never exist without them. A batch that rewrites events waits
// for them before it starts: a rewrite may replace one of them.
func (b *Batch) commitAfter(ctx context.Context, e *earlyEvents, events, quar []row) error {
	stored := func() error {
		if err := e.wait(); err != nil {
			return fmt.Errorf("store %d events: %w", e.n, err)
		}
		return nil
	}
	if len(b.rewrites) > 0 {
		if err := stored(); err != nil {
			return err
		}
	}
	err := b.s.commitIdempotentAfter(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := b.writeEvents(ctx, tx, events, quar); err != nil {
			return err
		}
		return b.writeRest(ctx, tx)
	}, stored)
	_ = e.wait() // the rest failed before asking: let the events' commit end
	return err
}

// splitEventsMin is the fewest events a commit stores in a transaction of
// their own beside the rest of the batch: for fewer, the second
// transaction's round trips and fsync cost more than running both at once
// saves.
const splitEventsMin = 1000

// writeEvents fences the batch's sites and stores events and quar and
// the batch's rewritten events.
func (b *Batch) writeEvents(ctx context.Context, tx pgx.Tx, events, quar []row) error {
	// The fence goes first: a commit of a site this worker no longer
	// holds fails before it writes anything, and the lease rows it locks
	// keep a takeover waiting until this commit ends.
	if err := b.s.fence(ctx, tx, b); err != nil {
		return err
	}
	if err := insertNew(ctx, tx, events, quar); err != nil {
		return err
	}
	return rewriteEvents(ctx, tx, b.rewrites)
}

// insertNew stores new events and quarantined ones.
func insertNew(ctx context.Context, tx pgx.Tx, events, quar []row) error {
	if err := insertEvents(ctx, tx, events); err != nil {
		return err
	}
	return insertQuarantine(ctx, tx, quar)
}

// writeRest writes the batch's device records, keyed records and
// projected rows.
func (b *Batch) writeRest(ctx context.Context, tx pgx.Tx) error {
	if err := upsertDevices(ctx, tx, b.devices, b.acked); err != nil {
		return err
	}
	if err := writeKV(ctx, tx, b.kv); err != nil {
		return err
	}
	for _, p := range b.projects {
		if p.write == nil {
			continue
		}
		if err := p.write(ctx, tx); err != nil {
			return fmt.Errorf("project downlink changes of %s: %w", p.site, err)
		}
	}
	return nil
}

// sortedOnce sorts rows by key and keeps the first put of each key: a
// statement may lock a row only once.
func sortedOnce(rows []row) []row {
	slices.SortStableFunc(rows, compareRows)
	return slices.CompactFunc(rows, func(a, b row) bool { return compareRows(a, b) == 0 })
}

// keepStored is the conflict clause of the event inserts: a row whose key
// is stored already keeps its first copy, and is locked. The lock is
// written to the WAL, so a transaction that finds every row stored (a
// resend after a commit whose wait for the synchronous standby was cut
// off) still writes a commit record and waits for the standby; with DO
// NOTHING it wrote nothing, its COMMIT returned at once, and the rows it
// found might be on the primary alone.
const keepStored = `ON CONFLICT (site, device, seq) DO UPDATE SET body = EXCLUDED.body WHERE false`

// copyEventsMin is the fewest events a commit COPYs: for fewer, the
// savepoint and the COPY exchange cost more than they save.
const copyEventsMin = 200

// insertEvents stores the rows; rows whose key is stored already are left
// out (the first copy stays). A group of copyEventsMin or more goes by
// COPY, which takes the rows at about half the server's CPU of an INSERT
// of arrays (rows written a page at a time, no per-row conflict
// handling); nearly always none is stored yet, as ingest sends only the
// events its device records do not hold. Should one be (a hub that lost
// its records, another hub on the database), the COPY fails on the key
// and is rolled back to its savepoint, and the rows go as four arrays in
// one INSERT that leaves them as they are (keepStored).
func insertEvents(ctx context.Context, tx pgx.Tx, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	if len(rows) >= copyEventsMin {
		done, err := copyEvents(ctx, tx, rows)
		if err != nil || done {
			return err
		}
	}
	sites, devices, seqs, bodies := columns(rows)
	_, err := tx.Exec(ctx, `INSERT INTO events (site, device, seq, body)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[])
		`+keepStored, sites, devices, seqs, bodies)
	if err != nil {
		return fmt.Errorf("store %d events: %w", len(rows), err)
	}
	return nil
}

// copyEvents COPYs rows into events inside a savepoint: done is false,
// with the savepoint rolled back, when a row's key is stored already.
func copyEvents(ctx context.Context, tx pgx.Tx, rows []row) (done bool, err error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("store %d events: %w", len(rows), err)
	}
	_, err = sp.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(copyData(rows)),
		"COPY events (site, device, seq, body) FROM STDIN WITH (FORMAT binary)")
	if err == nil {
		if err := sp.Commit(ctx); err != nil {
			return false, fmt.Errorf("store %d events: %w", len(rows), err)
		}
		return true, nil
	}
	if rerr := sp.Rollback(ctx); rerr != nil {
		return false, fmt.Errorf("store %d events: %w (and rolling back: %w)", len(rows), err, rerr)
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == "23505" { // unique_violation
		return false, nil
	}
	return false, fmt.Errorf("store %d events: %w", len(rows), err)
}

// copyData is rows in COPY's binary format, written directly: pgx's
// CopyFrom boxes every value and plans its encoding per value, a tenth of
// the hub's CPU in a catch-up. The columns are text, text, bigint, bytea,
// whose binary forms are the UTF-8 bytes, 8 bytes big-endian and the bytes.
func copyData(rows []row) []byte {
	n := len(copySignature) + 8 + 2
	for i := range rows {
		n += 2 + 4*4 + len(rows[i].site) + len(rows[i].device) + 8 + len(rows[i].body)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, copySignature...)
	buf = binary.BigEndian.AppendUint32(buf, 0) // flags
	buf = binary.BigEndian.AppendUint32(buf, 0) // header extension length
	for i := range rows {
		r := &rows[i]
		buf = binary.BigEndian.AppendUint16(buf, 4)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r.site)))
		buf = append(buf, r.site...)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r.device)))
		buf = append(buf, r.device...)
		buf = binary.BigEndian.AppendUint32(buf, 8)
		buf = binary.BigEndian.AppendUint64(buf, uint64(r.seq))
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r.body)))
		buf = append(buf, r.body...)
	}
	return binary.BigEndian.AppendUint16(buf, 0xffff) // trailer: -1
}

// copySignature opens COPY's binary format.
const copySignature = "PGCOPY\n\xff\r\n\x00"

// rewriteEvents stores the rewritten events in place of what is stored,
// in key order.
func rewriteEvents(ctx context.Context, tx pgx.Tx, rw map[rowKey][]byte) error {
	if len(rw) == 0 {
		return nil
	}
	rows := make([]row, 0, len(rw))
	for k, body := range rw {
		rows = append(rows, row{site: k.site, device: k.device, seq: k.seq, body: body})
	}
	slices.SortFunc(rows, compareRows)
	sites, devices, seqs, bodies := columns(rows)
	_, err := tx.Exec(ctx, `INSERT INTO events (site, device, seq, body)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[])
		ON CONFLICT (site, device, seq) DO UPDATE SET body = EXCLUDED.body`, sites, devices, seqs, bodies)
	if err != nil {
		return fmt.Errorf("rewrite %d events: %w", len(rows), err)
	}
	return nil
}

func insertQuarantine(ctx context.Context, tx pgx.Tx, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	sites, devices, seqs, bodies := columns(rows)
	reasons := make([]string, len(rows))
	for i, r := range rows {
		reasons[i] = r.reason
	}
	_, err := tx.Exec(ctx, `INSERT INTO quarantine (site, device, seq, body, reason)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[], $5::text[])
		`+keepStored, sites, devices, seqs, bodies, reasons)
	if err != nil {
		return fmt.Errorf("quarantine %d events: %w", len(rows), err)
	}
	return nil
}

func upsertDevices(ctx context.Context, tx pgx.Tx, recs map[deviceKey][]byte, acked map[deviceKey]int64) error {
	if len(recs) == 0 {
		return nil
	}
	keys := make([]deviceKey, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b deviceKey) int { return cmp.Or(cmp.Compare(a.site, b.site), cmp.Compare(a.id, b.id)) })
	sites, ids := make([]string, len(keys)), make([]string, len(keys))
	ackeds, vals := make([]int64, len(keys)), make([][]byte, len(keys))
	for i, k := range keys {
		sites[i], ids[i], ackeds[i], vals[i] = k.site, k.id, acked[k], recs[k]
	}
	_, err := tx.Exec(ctx, `INSERT INTO devices (site, id, acked, record)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[])
		ON CONFLICT (site, id) DO UPDATE SET acked = EXCLUDED.acked, record = EXCLUDED.record`,
		sites, ids, ackeds, vals)
	if err != nil {
		return fmt.Errorf("store %d device records: %w", len(keys), err)
	}
	return nil
}

func columns(rows []row) (sites, devices []string, seqs []int64, bodies [][]byte) {
	sites, devices = make([]string, len(rows)), make([]string, len(rows))
	seqs, bodies = make([]int64, len(rows)), make([][]byte, len(rows))
	for i, r := range rows {
		sites[i], devices[i], seqs[i], bodies[i] = r.site, r.device, r.seq, r.body
	}
	return
}
