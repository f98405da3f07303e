package ingest

import (
	"linli/hub/store"
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

// Batch is one group commit (store.Batch): the events, quarantined events
// and device records, with the merged state's writes (Applier) in the
// same transaction.
type Batch = store.Batch

// BadgerStore is the hub's embedded Badger store as ingest's Store.
type BadgerStore struct{ *store.Store }

var _ Store = BadgerStore{}
