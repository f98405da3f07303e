package ingest

import "linli/hub/pgstore"

// PostgresStore is the hub's PostgreSQL store as ingest's Store. The
// merged state is not kept there yet, so it goes without an Applier.
type PostgresStore struct{ *pgstore.Store }

// NewBatch starts a group commit in PostgreSQL.
func (s PostgresStore) NewBatch() Batch { return s.Store.NewBatch() }

var _ Store = PostgresStore{}
