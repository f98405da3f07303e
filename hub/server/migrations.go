package server

import (
	"fmt"

	"linli/hub/operators"
	"linli/hub/store"
)

// migrations take the hub's store from one layout version to the next, in
// order (see store.Upgrade); Start runs those a store has not had. Append
// only: a released migration is never changed or removed.
var migrations = []store.Migration{
	{Name: "redact secrets older hubs stored in clear in the audit log", Apply: redactAudit},
	// Nothing to rewrite: older events stay one per key and are read as
	// they are. The version moves on so that a hub reading one event per
	// key refuses the store (and its backups) instead of misreading runs.
	{Name: "events of a device may be stored in runs, one value per stretch of consecutive seqs", Apply: func(*store.Store) error { return nil }},
}

// storeVersion is the layout version this binary writes.
var storeVersion = store.Latest(migrations)

// redactAudit rewrites audit entries an older hub stored with secrets in
// clear, then purges the store (a fresh copy of the newest values) so the
// old values leave its files. The purge runs whether or not this pass
// rewrote anything: after a crash between the rewrite and the purge, the
// rerun finds nothing to rewrite but the old values are still in the files.
func redactAudit(s *store.Store) error {
	n, err := operators.RedactStoredAudit(s.DB())
	if err != nil {
		return err
	}
	if err := s.Purge(); err != nil {
		return fmt.Errorf("purge rewritten audit entries: %w", err)
	}
	if n > 0 {
		s.Logger().Warn("audit entries stored with secrets in clear were redacted and purged from the store's files", "entries", n)
	}
	return nil
}
