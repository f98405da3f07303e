package ingest

import "linli/hub/pgstore"

// PostgresStore is the hub's PostgreSQL store as ingest's Store: the
// merged state (Applier) commits in the same transaction as the events.
type PostgresStore struct{ *pgstore.Store }

var _ Store = PostgresStore{}
