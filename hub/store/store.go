// Package store keeps the hub's durable state in Badger: every edge event
// exactly once, each device's received ranges and registry record, and the
// indexes the API reads. Every key starts with its site, so sites can be
// split across hubs.
package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/wire"
)

// Key layout.
//
//	d/{site}/{device}              DeviceRecord
//	e/{site}/{device}/{seq:8}      event (CBOR, device omitted), or a run
//	                               of consecutive events (a CBOR array of
//	                               them) under the key of its last
//	q/{site}/{device}/{seq:8}      quarantined event that failed validation
//	x/report/{site}/{report id}    unused: an index of report events that
//	                               older hubs wrote and nothing reads
const (
	// PrefixCache holds derived data (the merged state's snapshot) that
	// can be rebuilt from the rest; a rewrite of the store drops it.
	PrefixCache = "cache/"
	// PrefixFact holds the merged state's facts (hub/state): the only
	// records read by the version they were written at (View.Scan with a
	// mark), which PostgreSQL indexes for them alone.
	PrefixFact = "f/"

	prefixDevice = "d/"
	prefixEvent  = "e/"
	prefixQuar   = "q/"
)

// ErrNotFound is returned for unknown devices and events.
var ErrNotFound = errors.New("not found")

// Range is an inclusive range of sequence numbers.
type Range struct {
	From uint64 `cbor:"1,keyasint"`
	To   uint64 `cbor:"2,keyasint"`
}

// DeviceRecord is what the hub knows of a device.
type DeviceRecord struct {
	ID       string    `cbor:"1,keyasint"`
	Site     string    `cbor:"2,keyasint"`
	Role     string    `cbor:"3,keyasint,omitempty"`
	Version  string    `cbor:"4,keyasint,omitempty"`
	Acked    uint64    `cbor:"5,keyasint"`           // every seq up to here is held
	Above    []Range   `cbor:"6,keyasint,omitempty"` // held ranges beyond Acked, sorted, disjoint
	Received uint64    `cbor:"7,keyasint"`           // events stored
	Rejected uint64    `cbor:"8,keyasint,omitempty"` // events quarantined
	First    time.Time `cbor:"9,keyasint,omitempty"`
	LastSeen time.Time `cbor:"10,keyasint,omitempty"`
	Online   bool      `cbor:"11,keyasint,omitempty"`
	Pending  uint64    `cbor:"12,keyasint,omitempty"` // the edge's backlog as it last said
	LastSeq  uint64    `cbor:"13,keyasint,omitempty"` // the edge's newest seq as it last said
	SkewMs   int64     `cbor:"14,keyasint,omitempty"` // edge wall clock minus hub's, last hello
	Down     uint64    `cbor:"15,keyasint,omitempty"` // downlink changes applied, as the edge last said
	Oldest   time.Time `cbor:"16,keyasint,omitempty"` // the edge's oldest unacked event, as it last said
	// Lost counts the seqs this hub will never get: the edge no longer
	// held them when it said hello (after a restore from a backup that
	// did not cover them). Gaps are their ranges.
	Lost uint64  `cbor:"17,keyasint,omitempty"`
	Gaps []Range `cbor:"18,keyasint,omitempty"`
	// CA: fingerprints of the site CAs the edge trusts, as its last hello
	// said.
	CA []string `cbor:"19,keyasint,omitempty"`
}

// AckedFrom is the high-water mark of the seqs numbered above base: every
// seq in (base, mark] is held. A device replaced under the same id numbers
// above a base of its own, far above its predecessor's seqs, so each key's
// range has its own mark; base 0 is the first device's, Acked.
func (d *DeviceRecord) AckedFrom(base uint64) uint64 {
	if base == 0 || d.Acked >= base {
		return d.Acked
	}
	mark := base
	for _, r := range d.Above {
		if r.From <= mark+1 && r.To > mark {
			mark = r.To
		}
	}
	return mark
}

// Lose records that the edge numbering above base holds no seq below
// first any more: every seq in (AckedFrom(base), first) not held is lost
// for good. It counts them, records their ranges as a gap, and marks them
// covered, so the device's events after the hole are taken and acked
// instead of waited on for ever. The hole is counted within base's range
// only: a replacement whose first seq is base+1 has lost nothing, however
// far its base lies above its predecessor's seqs. It returns how many
// seqs it recorded as lost.
func (d *DeviceRecord) Lose(base, first uint64) uint64 {
	mark := d.AckedFrom(base)
	if first <= mark+1 {
		return 0
	}
	var lost uint64
	next := mark + 1
	record := func(from, to uint64) {
		if from > to {
			return
		}
		lost += to - from + 1
		d.Gaps = append(d.Gaps, Range{From: from, To: to})
	}
	for _, r := range d.Above {
		if r.To < next {
			continue // below this range's mark: another key's, or held
		}
		if r.From >= first {
			break
		}
		record(next, r.From-1)
		next = r.To + 1
	}
	record(next, first-1)
	d.Lost += lost
	d.Cover(mark+1, first-1)
	return lost
}

// Holds reports whether seq is already held.
func (d *DeviceRecord) Holds(seq uint64) bool {
	if seq <= d.Acked {
		return true
	}
	for _, r := range d.Above {
		if seq >= r.From && seq <= r.To {
			return true
		}
		if r.From > seq {
			break
		}
	}
	return false
}

// Cover marks [from, to] as held and advances Acked over every range that
// now joins it.
func (d *DeviceRecord) Cover(from, to uint64) {
	if to <= d.Acked {
		return
	}
	from = max(from, d.Acked+1)
	rs := append(d.Above, Range{From: from, To: to})
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.From < b.From:
			return -1
		case a.From > b.From:
			return 1
		}
		return 0
	})
	merged := rs[:0]
	for _, r := range rs {
		if n := len(merged); n > 0 && r.From <= merged[n-1].To+1 {
			merged[n-1].To = max(merged[n-1].To, r.To)
			continue
		}
		merged = append(merged, r)
	}
	for len(merged) > 0 && merged[0].From <= d.Acked+1 {
		d.Acked = max(d.Acked, merged[0].To)
		merged = merged[1:]
	}
	d.Above = slices.Clone(merged)
	if len(d.Above) == 0 {
		d.Above = nil
	}
}

// Store is the hub's Badger store.
type Store struct {
	db      *badger.DB
	log     *slog.Logger
	dir     string
	profile kv.Profile
	empty   bool // nothing was stored when it opened: a new store
	// rewriteMu is held by Expire while it reads and writes back runs of
	// events, and by a batch that rewrote a stored event until it ends,
	// so neither writes back a run older than the other's.
	rewriteMu sync.Mutex
}

// Open opens or creates the store in dir.
func Open(dir string, p kv.Profile, log *slog.Logger) (*Store, error) {
	if err := finishPurge(dir); err != nil {
		return nil, err
	}
	db, err := kv.Open(dir, p, log)
	if err != nil {
		return nil, err
	}
	empty := true
	err = db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		it := txn.NewIterator(o)
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open hub store: %w", err), db.Close())
	}
	return &Store{db: db, log: log, dir: dir, profile: p, empty: empty}, nil
}

// Purge makes overwritten values leave the store's files: Badger keeps old
// versions in its write-ahead log, value log and tables until a compaction
// happens to drop them, which no call forces (Flatten does nothing when the
// tables already sit on one level). So the latest version of every key is
// copied into a fresh directory, synced, and swapped in for the old one,
// which is then deleted. It is for a one-off rewrite of data that must not
// linger (secrets an older version stored), before anyone else holds DB.
// A crash midway leaves either the old directory (the rewrite runs again at
// the next start) or the new one complete beside a ".purged" marker.
func (s *Store) Purge() error {
	fresh := s.dir + ".purge"
	old := s.dir + ".purged"
	if err := os.RemoveAll(fresh); err != nil {
		return fmt.Errorf("purge store: %w", err)
	}
	dst, err := kv.Open(fresh, s.profile, s.log)
	if err != nil {
		return fmt.Errorf("purge store: open copy: %w", err)
	}
	if err := copyLatest(s.db, dst); err != nil {
		return errors.Join(fmt.Errorf("purge store: copy: %w", err), dst.Close())
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("purge store: close copy: %w", err)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("purge store: close: %w", err)
	}
	if err := os.Rename(s.dir, old); err != nil {
		return fmt.Errorf("purge store: %w", err)
	}
	if err := os.Rename(fresh, s.dir); err != nil {
		return fmt.Errorf("purge store: %w", err)
	}
	if err := syncDir(filepath.Dir(s.dir)); err != nil {
		return fmt.Errorf("purge store: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("purge store: remove old files: %w", err)
	}
	db, err := kv.Open(s.dir, s.profile, s.log)
	if err != nil {
		return fmt.Errorf("purge store: reopen: %w", err)
	}
	s.db = db
	return nil
}

// copyLatest writes the newest version of every live key of src into dst
// (a write batch, flushed and synced by dst's close).
func copyLatest(src, dst *badger.DB) error {
	wb := dst.NewWriteBatch()
	defer wb.Cancel()
	err := src.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if bytes.HasPrefix(item.Key(), []byte(PrefixCache)) {
				continue // derived, and keyed to the old store's versions
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			e := badger.NewEntry(item.KeyCopy(nil), v).WithMeta(item.UserMeta())
			if exp := item.ExpiresAt(); exp != 0 {
				e.ExpiresAt = exp
			}
			if err := wb.SetEntry(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return wb.Flush()
}

// finishPurge settles a Purge that a crash interrupted: with the new
// directory in place the old one is deleted; without it the old one is put
// back (its rewrite runs again).
func finishPurge(dir string) error {
	old := dir + ".purged"
	if _, err := os.Stat(old); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(dir); err == nil {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("finish store purge: %w", err)
		}
		return nil
	}
	if err := os.RemoveAll(dir + ".purge"); err != nil {
		return fmt.Errorf("finish store purge: %w", err)
	}
	if err := os.Rename(old, dir); err != nil {
		return fmt.Errorf("finish store purge: put the old store back: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// DB is the underlying database, for the hub packages that keep their own
// prefixes in it.
func (s *Store) DB() *badger.DB { return s.db }

// Logger is the store's logger, for migrations.
func (s *Store) Logger() *slog.Logger { return s.log }

// Close closes the store.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close hub store: %w", err)
	}
	return nil
}

func deviceKey(site, device string) []byte {
	return kv.Key(prefixDevice, []byte(site+"/"+device))
}

func eventPrefix(site, device string) []byte {
	return kv.Key(prefixEvent, []byte(site+"/"+device+"/"))
}

// EventKey is the key of one event.
func EventKey(site, device string, seq uint64) []byte {
	return appendEventKey(make([]byte, 0, eventKeyLen(site, device)), site, device, seq)
}

func eventKeyLen(site, device string) int { return len(prefixEvent) + len(site) + len(device) + 2 + 8 }

// appendEventKey appends EventKey's bytes to k, built in place: a
// catch-up builds hundreds of thousands, and joining them from parts
// allocated four times for each.
func appendEventKey(k []byte, site, device string, seq uint64) []byte {
	k = append(k, prefixEvent...)
	k = append(k, site...)
	k = append(k, '/')
	k = append(k, device...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint64(k, seq)
}

// Devices loads every device record.
func (s *Store) Devices() ([]DeviceRecord, error) {
	var out []DeviceRecord
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixDevice)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d DeviceRecord
			if err := it.Item().Value(func(v []byte) error { return event.UnmarshalOwn(v, &d) }); err != nil {
				return fmt.Errorf("device record %q: %w", it.Item().Key(), err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// Events returns up to limit stored events of a device with seq > after.
func (s *Store) Events(site, device string, after uint64, limit int) ([]event.Event, error) {
	var out []event.Event
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = eventPrefix(site, device)
		opts.PrefetchSize = min(limit, 100)
		it := txn.NewIterator(opts)
		defer it.Close()
		// A run of events is stored under its last seq: the first key at
		// or after after+1 holds after+1 if anything does.
		for it.Seek(EventKey(site, device, after+1)); it.Valid() && len(out) < limit; it.Next() {
			evs, err := storedEvents(it.Item(), device)
			if err != nil {
				return err
			}
			for _, ev := range evs {
				if ev.Seq > after && len(out) < limit {
					out = append(out, ev)
				}
			}
		}
		return nil
	})
	return out, err
}

// storedEvents decodes what is stored at item, of device (stored events
// leave their device out): one event, or a run of them in seq order.
func storedEvents(item *badger.Item, device string) ([]event.Event, error) {
	var evs []event.Event
	err := item.Value(func(v []byte) error {
		if event.IsArray(v) {
			var err error
			evs, _, err = event.UnmarshalArray(v)
			return err
		}
		ev, err := event.DecodeEvent(v)
		evs = []event.Event{ev}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("event %q: %w", item.Key(), err)
	}
	for i := range evs {
		evs[i].Device = device
	}
	return evs, nil
}

// EventReader reads single stored events inside a caller's transaction
// with one iterator. Read in key order (as the hub's facts refer to
// them) the next event is mostly a few keys ahead, and it steps there:
// a seek starts over in every level of the tree, and the merged state
// loaded twice as slowly with a seek per event. The run it read last is
// kept decoded: facts name events of the same run one after the other.
type EventReader struct {
	txn *badger.Txn
	it  *badger.Iterator // opened at the first read

	key []byte        // of the run in evs
	evs []event.Event // the run at key, decoded
}

// NewEventReader reads events in txn; Close it before the transaction ends.
func NewEventReader(txn *badger.Txn) *EventReader { return &EventReader{txn: txn} }

// Close releases the iterator.
func (r *EventReader) Close() {
	if r.it != nil {
		r.it.Close()
	}
}

// Event returns the stored event of device with seq, or ErrNotFound.
func (r *EventReader) Event(site, device string, seq uint64) (event.Event, error) {
	if r.it == nil {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixEvent)
		r.it = r.txn.NewIterator(opts)
	}
	want := EventKey(site, device, seq)
	for range 16 {
		if !r.it.Valid() || bytes.Compare(r.it.Item().Key(), want) >= 0 {
			break
		}
		r.it.Next()
	}
	// The event is in the first value at or after its own key, if it is
	// stored: stepping there from below finds it; from anywhere else only
	// the value it is in says so, and otherwise a seek does.
	if r.it.Valid() && bytes.Compare(r.it.Item().Key(), want) >= 0 {
		if ev, ok, err := r.find(site, device, seq); err != nil || ok {
			return ev, err
		}
	}
	if r.it.Seek(want); !r.it.Valid() {
		return event.Event{}, ErrNotFound
	}
	ev, ok, err := r.find(site, device, seq)
	if err == nil && !ok {
		err = ErrNotFound
	}
	return ev, err
}

// find looks for seq in the value the iterator is at.
func (r *EventReader) find(site, device string, seq uint64) (event.Event, bool, error) {
	item := r.it.Item()
	if !bytes.HasPrefix(item.Key(), eventPrefix(site, device)) {
		return event.Event{}, false, nil
	}
	if !bytes.Equal(item.Key(), r.key) {
		evs, err := storedEvents(item, device)
		if err != nil {
			return event.Event{}, false, err
		}
		r.key, r.evs = item.KeyCopy(r.key[:0]), evs
	}
	i, ok := slices.BinarySearchFunc(r.evs, seq, func(ev event.Event, seq uint64) int { return cmp.Compare(ev.Seq, seq) })
	if !ok {
		return event.Event{}, false, nil
	}
	return r.evs[i], true, nil
}

// BadgerBatch is one commit's worth of writes, built by ingest and
// committed at once with a single synced transaction (or a few if it is
// very large).
type BadgerBatch struct {
	s   *Store
	txn *badger.Txn
	err error
	n   int
	// keys is where the batch's event keys are built, a block at a time:
	// the transaction holds every key until the commit, and one allocation
	// per key was a share of the committer's CPU in a catch-up.
	keys []byte
	// run is the events PutEvent was given last, consecutive seqs of one
	// device: they are stored as one value under the last one's key.
	run       [][]byte
	runBytes  int
	runSite   string
	runDevice string
	runLast   uint64
	locked    bool // holds s.rewriteMu (RewriteEvent)
	// written is the stretches of seqs this batch stored, by site/device;
	// ro and roIt read what was stored before it (heldIn).
	written map[string][][2]uint64
	ro      *badger.Txn
	roIt    *badger.Iterator
}

// keyBlock is the size of the blocks event keys are built in.
const keyBlock = 64 << 10

// NewBatch starts a commit.
func (s *Store) NewBatch() Batch { return s.NewBadgerBatch() }

// NewBadgerBatch starts a commit, as its Badger type.
func (s *Store) NewBadgerBatch() *BadgerBatch {
	return &BadgerBatch{s: s, txn: s.db.NewTransaction(true)}
}

func (b *BadgerBatch) set(key, val []byte) {
	if b.err != nil {
		return
	}
	err := b.txn.Set(key, val)
	if errors.Is(err, badger.ErrTxnTooBig) {
		// Commit what we have and go on in a fresh transaction: the ack is
		// only sent after the final Commit, so a crash in between is safe.
		if err = b.txn.Commit(); err == nil {
			b.txn = b.s.db.NewTransaction(true)
			err = b.txn.Set(key, val)
		}
	}
	if err != nil {
		b.err = fmt.Errorf("store write: %w", err)
	}
	b.n++
}

// Runs of events stored as one value hold at most this many events and
// bytes (Badger keeps values of up to a MiB in its tree; a run stays
// far below that).
const (
	maxRun      = 1000
	maxRunBytes = 256 << 10
)

// PutEvent stores an event under its site and device. Events given one
// after the other with consecutive seqs of one device are stored as one
// value, a CBOR array of their stored forms, under the key of the last:
// a Badger entry per event was half of the hub's CPU in a catch-up
// (write-ahead log, skiplist, the transaction's bookkeeping). A run's seqs
// are consecutive, so runs never overlap and a seek to an event's key
// finds the value it is in (Events, EventReader).
func (b *BadgerBatch) PutEvent(site string, ev *event.Event, encoded []byte) {
	if len(b.run) > 0 && (b.runSite != site || b.runDevice != ev.Device || ev.Seq != b.runLast+1 ||
		len(b.run) == maxRun || b.runBytes+len(encoded) > maxRunBytes) {
		b.flushRun()
	}
	b.runSite, b.runDevice, b.runLast = site, ev.Device, ev.Seq
	b.run = append(b.run, encoded)
	b.runBytes += len(encoded)
}

// flushRun writes the pending run, leaving out the seqs already stored
// (an edge resends what it has no ack for): each stretch of the rest is
// stored as a run, a lone event as itself, as hubs always stored events.
func (b *BadgerBatch) flushRun() {
	if len(b.run) == 0 || b.err != nil {
		b.run, b.runBytes = b.run[:0], 0
		return
	}
	first := b.runLast - uint64(len(b.run)) + 1
	held, err := b.heldIn(b.runSite, b.runDevice, first, b.runLast)
	if err != nil {
		b.err = fmt.Errorf("store write: %w", err)
		return
	}
	for i := 0; i < len(b.run); {
		if held[first+uint64(i)] {
			i++
			continue
		}
		j := i + 1
		for j < len(b.run) && !held[first+uint64(j)] {
			j++
		}
		b.putRun(first+uint64(j-1), b.run[i:j])
		if b.written == nil {
			b.written = map[string][][2]uint64{}
		}
		k := b.runSite + "/" + b.runDevice
		b.written[k] = append(b.written[k], [2]uint64{first + uint64(i), first + uint64(j-1)})
		i = j
	}
	b.run, b.runBytes = b.run[:0], 0
}

// putRun stores the events encoded, consecutive seqs ending at last.
func (b *BadgerBatch) putRun(last uint64, encoded [][]byte) {
	n := eventKeyLen(b.runSite, b.runDevice)
	if cap(b.keys)-len(b.keys) < n {
		b.keys = make([]byte, 0, max(keyBlock, n))
	}
	start := len(b.keys)
	b.keys = appendEventKey(b.keys, b.runSite, b.runDevice, last)
	// Capped at its length: nothing appended to one key can run into the
	// next.
	key := b.keys[start:len(b.keys):len(b.keys)]
	val := encoded[0]
	if len(encoded) > 1 {
		size := 9
		for _, e := range encoded {
			size += len(e)
		}
		val = event.AppendArray(make([]byte, 0, size), encoded)
	}
	b.set(key, val)
}

// heldIn returns the seqs in [first, last] of a device stored already,
// this batch's writes included; nil when there are none, as in a
// catch-up. Stored values hold disjoint stretches of seqs under the key
// of their stretch's last (an event stored alone: its own), so the values
// to look at start at the first key at or after first's. The store is
// read through one read-only iterator per batch (a read-write
// transaction's iterators sort its pending writes each time, and a group
// of many one-event batches made that quadratic); this batch's own runs
// are kept in memory.
func (b *BadgerBatch) heldIn(site, device string, first, last uint64) (map[uint64]bool, error) {
	var held map[uint64]bool
	hold := func(from, to uint64) {
		for seq := max(from, first); seq <= min(to, last); seq++ {
			if held == nil {
				held = map[uint64]bool{}
			}
			held[seq] = true
		}
	}
	for _, r := range b.written[site+"/"+device] {
		hold(r[0], r[1])
	}
	if b.roIt == nil {
		b.ro = b.s.db.NewTransaction(false)
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixEvent)
		b.roIt = b.ro.NewIterator(opts)
	}
	prefix := eventPrefix(site, device)
	for b.roIt.Seek(EventKey(site, device, first)); b.roIt.Valid(); b.roIt.Next() {
		item := b.roIt.Item()
		key := item.Key()
		if !bytes.HasPrefix(key, prefix) || len(key) != len(prefix)+8 {
			break
		}
		to := kv.ParseU64(key[len(prefix):])
		from := to
		err := item.Value(func(v []byte) error {
			if !event.IsArray(v) {
				return nil
			}
			evs, _, err := event.UnmarshalArray(v)
			if err == nil && len(evs) > 0 {
				from = evs[0].Seq
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("event %q: %w", key, err)
		}
		if from > last {
			break
		}
		hold(from, to)
	}
	return held, nil
}

// closeReads ends the batch's reads of the store.
func (b *BadgerBatch) closeReads() {
	if b.roIt != nil {
		b.roIt.Close()
		b.ro.Discard()
		b.roIt, b.ro = nil, nil
	}
}

// Quarantine stores an event that failed validation, with the reason, so
// that nothing an edge sent is silently lost.
func (b *BadgerBatch) Quarantine(site string, ev *event.Event, encoded []byte, reason string) {
	q := struct {
		Event  []byte `cbor:"1,keyasint"`
		Reason string `cbor:"2,keyasint"`
	}{encoded, reason}
	val, err := event.Marshal(q)
	if err != nil {
		b.err = err
		return
	}
	b.set(kv.Key(prefixQuar, []byte(site+"/"+ev.Device+"/"), kv.U64(ev.Seq)), val)
}

// PutDevice stores a device record.
func (b *BadgerBatch) PutDevice(d *DeviceRecord) {
	val, err := event.Marshal(d)
	if err != nil {
		b.err = fmt.Errorf("encode device record: %w", err)
		return
	}
	b.set(deviceKey(d.Site, d.ID), val)
}

// Set stores a raw key for other hub packages.
func (b *BadgerBatch) Set(key, val []byte) { b.set(key, val) }

// Delete removes a raw key.
func (b *BadgerBatch) Delete(key []byte) {
	if b.err != nil {
		return
	}
	err := b.txn.Delete(key)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = b.txn.Commit(); err == nil {
			b.txn = b.s.db.NewTransaction(true)
			err = b.txn.Delete(key)
		}
	}
	if err != nil {
		b.err = fmt.Errorf("store delete: %w", err)
	}
	b.n++
}

// Get reads a key as of the batch (its own writes included); a missing key
// is nil.
func (b *BadgerBatch) Get(key []byte) ([]byte, error) {
	b.flushRun()
	item, err := b.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// GetMany reads keys as Get does.
func (b *BadgerBatch) GetMany(keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := b.Get(k)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Project does nothing: Badger keeps the downlink log only.
func (b *BadgerBatch) Project(string, []wire.Change) {}

// Len is the number of writes in the batch.
func (b *BadgerBatch) Len() int { return b.n }

// Commit syncs the batch to disk.
func (b *BadgerBatch) Commit() error {
	b.flushRun()
	b.closeReads()
	defer b.unlock()
	defer b.txn.Discard()
	if b.err != nil {
		return b.err
	}
	if err := b.txn.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Discard abandons the batch.
func (b *BadgerBatch) Discard() {
	b.closeReads()
	b.txn.Discard()
	b.unlock()
}

func (b *BadgerBatch) unlock() {
	if b.locked {
		b.locked = false
		b.s.rewriteMu.Unlock()
	}
}

// RewriteEvent replaces the stored form of a stored event (an erasure's
// anonymised copy): in the run it is stored in, which is written again
// whole, or under its own key. The batch keeps Expire from writing back
// runs until it is committed or discarded.
func (b *BadgerBatch) RewriteEvent(site string, ev *event.Event, encoded []byte) {
	if b.err != nil {
		return
	}
	if !b.locked {
		b.s.rewriteMu.Lock()
		b.locked = true
	}
	b.flushRun()
	key, val, err := b.rewritten(site, ev, encoded)
	if err != nil {
		b.err = fmt.Errorf("rewrite event: %w", err)
		return
	}
	b.set(key, val)
}

// rewritten is the key and value that store encoded in place of ev's
// stored form.
func (b *BadgerBatch) rewritten(site string, ev *event.Event, encoded []byte) ([]byte, []byte, error) {
	want := EventKey(site, ev.Device, ev.Seq)
	opts := badger.DefaultIteratorOptions
	opts.Prefix = eventPrefix(site, ev.Device)
	it := b.txn.NewIterator(opts)
	defer it.Close()
	if it.Seek(want); !it.Valid() {
		return want, encoded, nil
	}
	evs, raws, run, err := storedRun(it.Item(), ev.Device)
	if err != nil {
		return nil, nil, err
	}
	i, ok := slices.BinarySearchFunc(evs, ev.Seq, func(e event.Event, seq uint64) int { return cmp.Compare(e.Seq, seq) })
	if !ok {
		return want, encoded, nil // not stored (expired): as before, under its own key
	}
	if !run {
		return it.Item().KeyCopy(nil), encoded, nil // an event stored alone
	}
	raws[i] = encoded
	return it.Item().KeyCopy(nil), event.AppendArray(nil, raws), nil
}
