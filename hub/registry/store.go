package registry

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
)

// Store is what the registry keeps durably: enrolled devices, pending
// enrollment tokens and the sites' resident pseudonym keys. BadgerStore
// keeps them in the hub's Badger store; the PostgreSQL store (hub/pgstore)
// in tables.
type Store interface {
	// Devices loads every enrolled device.
	Devices() ([]Device, error)
	// PutToken stores a pending enrollment under the digest of its secret.
	PutToken(digest string, p Pending) error
	// Enroll takes the token with digest (ErrTokenUnknown if there is
	// none), calls build with it and stores the device build returns, all
	// in one transaction: if build fails, nothing changes and the token
	// stays, except when it fails with ErrTokenExpired: then the token is
	// spent and nothing else stored. Otherwise the token is spent.
	Enroll(digest string, build func(Pending) (Device, error)) (Device, error)
	// PutDevice stores a device's record, replacing the one under its id.
	PutDevice(d Device) error
	// ResidentKey returns a site's resident pseudonym key; if it has none,
	// it stores newKey and returns it (concurrent callers get one key).
	ResidentKey(site string, newKey []byte) ([]byte, error)
}

// Pending is an enrollment token not used yet.
type Pending struct {
	ID      string    `cbor:"1,keyasint"`
	Site    string    `cbor:"2,keyasint"`
	Role    string    `cbor:"3,keyasint"`
	Expires time.Time `cbor:"4,keyasint"`
	Replace bool      `cbor:"5,keyasint,omitempty"`
}

// BadgerStore keeps the registry in the hub's Badger store. Key layout
// (global: device ids are unique per hub):
//
//	v/dev/{id}             Device (CBOR)
//	v/tok/{sha256(secret)} Pending (CBOR), expiring an hour after the token
//	v/rkey/{site}          a site's resident pseudonym key
//
// The hub's Badger store does not detect conflicts between transactions
// (kv.Open), so the read-then-write of a token's use and of a key's
// first use are serialised here: two enrollments with one token would
// otherwise both succeed.
type BadgerStore struct {
	db *badger.DB
	mu sync.Mutex // held by every read-then-write
}

// NewBadgerStore keeps the registry in db.
func NewBadgerStore(db *badger.DB) *BadgerStore { return &BadgerStore{db: db} }

const (
	prefixDevice = "v/dev/"
	prefixToken  = "v/tok/"
	prefixRKey   = "v/rkey/"
)

var _ Store = (*BadgerStore)(nil)

// Devices implements Store.
func (s *BadgerStore) Devices() ([]Device, error) {
	var out []Device
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixDevice)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d Device
			if err := it.Item().Value(func(v []byte) error { return event.UnmarshalOwn(v, &d) }); err != nil {
				return fmt.Errorf("device %q: %w", it.Item().Key(), err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// PutToken implements Store. The entry outlives the token by an hour, so
// a late use is told it expired rather than that it is unknown.
func (s *BadgerStore) PutToken(digest string, p Pending) error {
	val, err := event.Marshal(p)
	if err != nil {
		return err
	}
	ttl := time.Until(p.Expires) + time.Hour
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.SetEntry(badger.NewEntry([]byte(prefixToken+digest), val).WithTTL(ttl))
	})
}

// Enroll implements Store.
func (s *BadgerStore) Enroll(digest string, build func(Pending) (Device, error)) (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d Device
	expired := false
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(prefixToken + digest))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrTokenUnknown
		}
		if err != nil {
			return err
		}
		var p Pending
		if err := item.Value(func(v []byte) error { return event.UnmarshalOwn(v, &p) }); err != nil {
			return err
		}
		if err := txn.Delete([]byte(prefixToken + digest)); err != nil {
			return err
		}
		if d, err = build(p); err != nil {
			if errors.Is(err, ErrTokenExpired) {
				expired = true
				return nil // commit the token's deletion
			}
			return err
		}
		val, err := event.Marshal(&d)
		if err != nil {
			return err
		}
		return txn.Set([]byte(prefixDevice+d.ID), val)
	})
	if err == nil && expired {
		return Device{}, ErrTokenExpired
	}
	return d, err
}

// PutDevice implements Store.
func (s *BadgerStore) PutDevice(d Device) error {
	val, err := event.Marshal(&d)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(prefixDevice+d.ID), val) })
}

// ResidentKey implements Store.
func (s *BadgerStore) ResidentKey(site string, newKey []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var key []byte
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(prefixRKey + site))
		if err == nil {
			key, err = item.ValueCopy(nil)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		key = newKey
		return txn.Set([]byte(prefixRKey+site), key)
	})
	return key, err
}
