package ingest

import (
	"linli/hub/store"
	"linli/shared/event"
)

// Store is where ingest keeps what edges send: every event exactly once
// under its site, device and seq, the events that failed validation, and
// the device records. A group commit's writes go into one Batch and are
// durable together, or not at all, before anything is acked.
type Store interface {
	// Devices loads every device record.
	Devices() ([]store.DeviceRecord, error)
	// NewBatch starts a group commit.
	NewBatch() Batch
}

// Batch is one group commit. Writes only record an error, which Commit
// returns; after Commit or Discard the batch is done.
type Batch interface {
	// PutEvent stores an event (encoded: its stored form, device left
	// out); an event already stored under the same key is kept.
	PutEvent(site string, ev *event.Event, encoded []byte)
	// Quarantine stores an event that failed validation, with the reason.
	Quarantine(site string, ev *event.Event, encoded []byte, reason string)
	// PutDevice stores a device record, replacing the one stored.
	PutDevice(d *store.DeviceRecord)
	Commit() error
	Discard()
}

// BadgerStore is the hub's embedded Badger store as ingest's Store. Its
// batches are the store's own, so the merged state (Applier) commits in
// the same transaction as the events it folds.
type BadgerStore struct{ *store.Store }

// NewBatch starts a group commit in Badger.
func (s BadgerStore) NewBatch() Batch { return s.Store.NewBatch() }

var _ Store = BadgerStore{}
