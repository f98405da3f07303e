package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
)

// Keys the store keeps about itself:
//
//	meta/version   the layout version of the store (decimal text)
//	meta/restore   the last restore from a backup into this store (JSON)
const (
	keyVersion = "meta/version"
	keyRestore = "meta/restore"
)

// TooNewError is Upgrade's answer for a store written by a newer hub:
// this binary does not know its layout and must not write to it.
type TooNewError struct{ Store, Supported int }

func (e *TooNewError) Error() string {
	return fmt.Sprintf("store version %d is newer than this linli-hub supports (%d): upgrade linli-hub", e.Store, e.Supported)
}

// Migration takes the store from one version to the next. Apply must be
// idempotent: the version moves on only after Apply returns, so a crash
// in between runs it again at the next start.
type Migration struct {
	Name  string
	Apply func(*Store) error
}

// Latest is the version a store has after every migration of ms:
// version 1 is the layout of hubs that kept no version, and migration i
// takes version i+1 to i+2.
func Latest(ms []Migration) int { return len(ms) + 1 }

// Version is the store's layout version; found is false for a store
// that has none recorded (a new one, or one an older hub wrote).
func (s *Store) Version() (v int, found bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyVersion))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			n, err := strconv.Atoi(string(b))
			if err != nil || n < 1 {
				return fmt.Errorf("stored version %q is not a positive integer", b)
			}
			v, found = n, true
			return nil
		})
	})
	if err != nil {
		return 0, false, fmt.Errorf("read store version: %w", err)
	}
	return v, found, nil
}

func (s *Store) setVersion(v int) error {
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyVersion), []byte(strconv.Itoa(v)))
	}); err != nil {
		return fmt.Errorf("write store version %d: %w", v, err)
	}
	return nil
}

// Upgrade brings the store to Latest(ms) before anything else reads it.
// A store with nothing in it is new and gets the latest version at once;
// one with data and no version is version 1 (every hub before versions
// wrote that layout). A store newer than Latest(ms) is refused with a
// *TooNewError and left untouched. Each migration is logged.
func (s *Store) Upgrade(ms []Migration) error {
	latest := Latest(ms)
	v, found, err := s.Version()
	if err != nil {
		return err
	}
	if !found {
		v = 1
		if s.empty {
			v = latest
		}
		if err := s.setVersion(v); err != nil {
			return err
		}
	}
	if v > latest {
		return &TooNewError{Store: v, Supported: latest}
	}
	for ; v < latest; v++ {
		m := ms[v-1]
		start := time.Now()
		s.log.Info("store migration", "from", v, "to", v+1, "name", m.Name)
		if err := m.Apply(s); err != nil {
			return fmt.Errorf("store migration %d to %d (%s): %w", v, v+1, m.Name, err)
		}
		if err := s.setVersion(v + 1); err != nil {
			return err
		}
		s.log.Info("store migration done", "version", v+1, "name", m.Name, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// Restore records a restore from a backup, for what the hub does after
// one (its edges resend what the backup lacked).
type Restore struct {
	At            time.Time `json:"at"`             // when the restore ran
	BackupCreated time.Time `json:"backup_created"` // when the backup was taken
	Hub           string    `json:"hub"`            // the hub the backup came from
	From          string    `json:"from"`           // the archive's file name
	// Epoch counts the restores this store went through: each starts a
	// new epoch, in which every device's downlink cursor is reset by a
	// snapshot and its events are taken again from where the restored
	// store ends.
	Epoch int `json:"epoch"`
}

// RecordRestore notes that the store was restored from a backup and
// starts a new epoch: the restored backup covers every device's acked
// seq, which becomes its backup horizon.
func (s *Store) RecordRestore(r Restore) error {
	switch prev, err := s.LastRestore(); {
	case err == nil:
		r.Epoch = prev.Epoch + 1
	case errors.Is(err, ErrNotFound):
		r.Epoch = 1
	default:
		return fmt.Errorf("record restore: %w", err)
	}
	marks, err := s.AckedMarks()
	if err != nil {
		return fmt.Errorf("record restore: %w", err)
	}
	if err := writeHorizon(s, marks); err != nil {
		return fmt.Errorf("record restore: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	// Marks of devices resynced after an earlier restore, which the
	// backup may hold, no longer count: every device resyncs again.
	if _, err := kv.DeleteAll(s.db, []byte(prefixResynced)); err != nil {
		return fmt.Errorf("record restore: %w", err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(keyRestore), b) }); err != nil {
		return fmt.Errorf("record restore: %w", err)
	}
	return nil
}

// LastRestore is the last restore recorded, or ErrNotFound.
func (s *Store) LastRestore() (Restore, error) { return LastRestore(s) }

// LastRestore is the last restore recorded in b, or ErrNotFound.
func LastRestore(b Backend) (Restore, error) {
	var r Restore
	err := b.View(func(v View) error {
		val, _, err := v.Get([]byte(keyRestore))
		if err != nil {
			return err
		}
		return json.Unmarshal(val, &r)
	})
	return r, err
}
