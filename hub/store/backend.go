package store

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/wire"
)

// Backend is the store the hub's packages keep their state in: the edge
// events and device records ingest writes, and the keyed records of the
// merged state (facts, snapshot, erasures, the hub's event counter), the
// downlink log and the store's own marks. Two implementations: the
// embedded Badger store (*Store) and PostgreSQL (pgstore.Store). Both
// behave alike; only their speed differs.
type Backend interface {
	// Devices loads every device record.
	Devices() ([]DeviceRecord, error)
	// Events returns up to limit stored events of a device with seq >
	// after, in seq order.
	Events(site, device string, after uint64, limit int) ([]event.Event, error)
	// NewBatch starts a write: everything in it is durable together at
	// Commit, or not at all.
	NewBatch() Batch
	// View runs fn on one consistent read of the store.
	View(fn func(View) error) error
	// ReadMark is above the version of every record committed so far and
	// not above that of any committed later (View's Scan since). The
	// merged state's snapshot records it.
	ReadMark() (uint64, error)
}

// View is a consistent read of the store.
type View interface {
	// Get returns the value of key and the version it was committed at;
	// ErrNotFound when there is none.
	Get(key []byte) (val []byte, version uint64, err error)
	// Scan calls fn for each key starting with prefix, at or after from
	// (nil: the prefix's first), in byte order, with its value and
	// version; only keys committed at a version above since (0: every
	// key). fn returning false ends the scan. key and val are fn's to
	// keep.
	Scan(prefix, from []byte, since uint64, fn func(key, val []byte, version uint64) (bool, error)) error
	// Event returns a stored edge event, or ErrNotFound. Read in key
	// order (as facts refer to them) they cost least.
	Event(site, device string, seq uint64) (event.Event, error)
}

// Batch is one write: a group commit of ingest, an operator's decision,
// a snapshot. Writes only record an error, which Commit returns; after
// Commit or Discard the batch is done.
type Batch interface {
	// PutEvent stores an event (encoded: its stored form, device left
	// out); an event already stored under the same key is kept.
	PutEvent(site string, ev *event.Event, encoded []byte)
	// Quarantine stores an event that failed validation, with the reason.
	Quarantine(site string, ev *event.Event, encoded []byte, reason string)
	// PutDevice stores a device record, replacing the one stored.
	PutDevice(d *DeviceRecord)
	// RewriteEvent replaces the stored form of an event (an erasure's
	// anonymised copy), storing it if it is not stored.
	RewriteEvent(site string, ev *event.Event, encoded []byte)
	// Set and Delete write the hub's keyed records.
	Set(key, val []byte)
	Delete(key []byte)
	// Get reads a key as of the batch, its own writes included; a
	// missing key is nil.
	Get(key []byte) ([]byte, error)
	// GetMany reads keys as Get does, the values in the order of keys
	// (nil for a missing key): one round trip where the store is across
	// a network.
	GetMany(keys [][]byte) ([][]byte, error)
	// Project hands the store the downlink changes this batch commits
	// for site, for a store that keeps queryable tables of them in the
	// same transaction (PostgreSQL); Badger keeps the log only.
	Project(site string, changes []wire.Change)
	// Len is the number of writes in the batch.
	Len() int
	Commit() error
	Discard()
}

// EventsAhead is a Batch that can store its events before its Commit,
// in a transaction of their own, while the caller goes on filling it
// (PostgreSQL: the server stores a group's events while the ingest merges
// it). Commit then commits the rest only after they are stored; events
// stored ahead of a batch that is discarded or fails stay, unacked, and
// the edge's resend keeps them once.
type EventsAhead interface {
	StoreEvents()
}

var (
	_ Backend = (*Store)(nil)
	_ Batch   = (*BadgerBatch)(nil)
)

// GetU64 reads a counter stored as 8 big-endian bytes; a missing key is 0.
func GetU64(v View, key []byte) (uint64, error) {
	val, _, err := v.Get(key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("%q: %d bytes, want 8", key, len(val))
	}
	var n uint64
	for _, c := range val {
		n = n<<8 | uint64(c)
	}
	return n, nil
}

// PrefixEnd is the least key above every key starting with prefix; nil
// when there is none (a prefix of 0xff bytes only).
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// View runs fn on one Badger read transaction.
func (s *Store) View(fn func(View) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		v := &badgerView{txn: txn}
		defer v.close()
		return fn(v)
	})
}

// ReadMark is Badger's next read timestamp: every version committed so
// far is at or below it, every later one above.
func (s *Store) ReadMark() (uint64, error) {
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return txn.ReadTs(), nil
}

type badgerView struct {
	txn    *badger.Txn
	events *EventReader
}

func (v *badgerView) close() {
	if v.events != nil {
		v.events.Close()
	}
}

func (v *badgerView) Get(key []byte) ([]byte, uint64, error) {
	item, err := v.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	val, err := item.ValueCopy(nil)
	return val, item.Version(), err
}

func (v *badgerView) Scan(prefix, from []byte, since uint64, fn func(key, val []byte, version uint64) (bool, error)) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	// Badger leaves out every table whose newest version is at or below
	// since, and older versions inside the rest: a start after a
	// snapshot steps over none of years of fact keys.
	opts.SinceTs = since
	it := v.txn.NewIterator(opts)
	defer it.Close()
	if from == nil {
		from = prefix
	}
	for it.Seek(from); it.Valid(); it.Next() {
		item := it.Item()
		if item.Version() <= since {
			continue
		}
		val, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("%q: %w", item.Key(), err)
		}
		more, err := fn(item.KeyCopy(nil), val, item.Version())
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func (v *badgerView) Event(site, device string, seq uint64) (event.Event, error) {
	if v.events == nil {
		v.events = NewEventReader(v.txn)
	}
	return v.events.Event(site, device, seq)
}
