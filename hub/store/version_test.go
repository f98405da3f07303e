package store

import (
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func version(t *testing.T, s *Store) int {
	t.Helper()
	v, found, err := s.Version()
	if err != nil || !found {
		t.Fatalf("version %d found %v: %v", v, found, err)
	}
	return v
}

// A new store starts at the latest version and runs no migration; a
// store an older hub wrote (data, no version) is version 1 and runs every
// migration once, in order; one newer than the binary is refused as is.
func TestUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(*Store) error // what an earlier hub left
		want    []string           // migrations run
		version int                // after Upgrade
		tooNew  bool
	}{
		{"new store", nil, nil, 3, false},
		{"store an older hub wrote", func(s *Store) error {
			return s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("d/s1/k1"), []byte("x")) })
		}, []string{"a", "b"}, 3, false},
		{"at version 2", func(s *Store) error { return s.setVersion(2) }, []string{"b"}, 3, false},
		{"newer than this binary", func(s *Store) error { return s.setVersion(7) }, nil, 7, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.prepare != nil {
				s := openTest(t, dir)
				if err := tc.prepare(s); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			var ran []string
			ms := []Migration{
				{"a", func(*Store) error { ran = append(ran, "a"); return nil }},
				{"b", func(*Store) error { ran = append(ran, "b"); return nil }},
			}
			s := openTest(t, dir)
			defer s.Close()
			err := s.Upgrade(ms)
			var tn *TooNewError
			if tc.tooNew != errors.As(err, &tn) {
				t.Fatalf("Upgrade: %v, want too new %v", err, tc.tooNew)
			}
			if tc.tooNew && err.Error() != "store version 7 is newer than this linli-hub supports (3): upgrade linli-hub" {
				t.Errorf("message %q", err)
			}
			if !tc.tooNew && err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ran, tc.want) {
				t.Errorf("ran %q, want %q", ran, tc.want)
			}
			if got := version(t, s); got != tc.version {
				t.Errorf("version %d, want %d", got, tc.version)
			}
		})
	}
}

// A migration that fails (or a crash while it runs) leaves the version
// where it was, and the next start runs it again and goes on.
func TestUpgradeResumesAfterAFailedMigration(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.setVersion(1); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("power cut")
	runs := map[string]int{}
	ms := func(failB bool) []Migration {
		return []Migration{
			{"a", func(*Store) error { runs["a"]++; return nil }},
			{"b", func(*Store) error {
				runs["b"]++
				if failB {
					return boom
				}
				return nil
			}},
		}
	}
	if err := s.Upgrade(ms(true)); !errors.Is(err, boom) {
		t.Fatalf("Upgrade: %v, want the migration's error", err)
	}
	if v := version(t, s); v != 2 {
		t.Fatalf("version %d after b failed, want 2 (a done)", v)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if err := s.Upgrade(ms(false)); err != nil {
		t.Fatal(err)
	}
	if v := version(t, s); v != 3 || runs["a"] != 1 || runs["b"] != 2 {
		t.Fatalf("version %d, runs %v; want 3, a once, b twice", v, runs)
	}
}

func TestRecordRestore(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	if _, err := s.LastRestore(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LastRestore on a new store: %v, want ErrNotFound", err)
	}
	want := Restore{At: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), BackupCreated: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC),
		Hub: "hub", From: "b.tar"}
	if err := s.RecordRestore(want); err != nil {
		t.Fatal(err)
	}
	want.Epoch = 1 // the first restore starts epoch 1
	if got, err := s.LastRestore(); err != nil || got != want {
		t.Fatalf("LastRestore %+v %v, want %+v", got, err, want)
	}
	if err := s.RecordRestore(Restore{Hub: "hub"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LastRestore(); err != nil || got.Epoch != 2 {
		t.Fatalf("second restore: epoch %d (%v), want 2", got.Epoch, err)
	}
}

// After a restore every device needs one snapshot until it has taken
// it; the marks survive a restart, and a later restore clears them.
func TestResyncAfterRestore(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	r, err := s.Resync()
	if err != nil {
		t.Fatal(err)
	}
	if r.Needs("s1", "k1") {
		t.Fatal("a store never restored needs no resync")
	}
	if err := s.RecordRestore(Restore{Hub: "hub"}); err != nil {
		t.Fatal(err)
	}
	if r, err = s.Resync(); err != nil {
		t.Fatal(err)
	}
	if !r.Needs("s1", "k1") || !r.Needs("s1", "k2") {
		t.Fatal("after a restore every device needs a resync")
	}
	if err := r.Done("s1", "k1"); err != nil {
		t.Fatal(err)
	}
	if r.Needs("s1", "k1") || !r.Needs("s1", "k2") {
		t.Fatal("k1 resynced, k2 not")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if r, err = s.Resync(); err != nil || r.Needs("s1", "k1") || !r.Needs("s1", "k2") {
		t.Fatalf("after a restart: k1 needs %v, k2 needs %v (%v)", r.Needs("s1", "k1"), r.Needs("s1", "k2"), err)
	}
	if err := s.RecordRestore(Restore{Hub: "hub"}); err != nil {
		t.Fatal(err)
	}
	if r, err = s.Resync(); err != nil || !r.Needs("s1", "k1") {
		t.Fatalf("a second restore: k1 needs %v (%v)", r.Needs("s1", "k1"), err)
	}
}
