package store

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
)

// holds reports whether any file under dir contains s.
func holds(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		found = found || bytes.Contains(b, []byte(s))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func put(t *testing.T, db *badger.DB, k, v string) {
	t.Helper()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(k), []byte(v)) }); err != nil {
		t.Fatal(err)
	}
}

// An overwritten value leaves every file of the store with Purge, and the
// newest values stay readable.
func TestPurgeDropsOverwrittenValues(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	s, err := Open(dir, kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	put(t, s.DB(), "k1", "old-secret-value-1")
	put(t, s.DB(), "k2", "kept-value-2")
	put(t, s.DB(), "k1", "redacted")
	if !holds(t, dir, "old-secret-value-1") {
		t.Fatal("the old value should still be in the files before Purge")
	}
	if err := s.Purge(); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"k1": "redacted", "k2": "kept-value-2"} {
		var got []byte
		if err := s.DB().View(func(txn *badger.Txn) error {
			it, err := txn.Get([]byte(k))
			if err != nil {
				return err
			}
			got, err = it.ValueCopy(nil)
			return err
		}); err != nil || string(got) != want {
			t.Fatalf("%s after Purge: %q %v, want %q", k, got, err, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if holds(t, dir, "old-secret-value-1") {
		t.Fatal("the overwritten value is still in the store's files")
	}
}

// A purge cut short between its two renames leaves the store where a
// restart finds it: the old directory is put back.
func TestOpenFinishesInterruptedPurge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	s, err := Open(dir, kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	put(t, s.DB(), "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, dir+".purged"); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.DB().View(func(txn *badger.Txn) error { _, err := txn.Get([]byte("k")); return err }); err != nil {
		t.Fatalf("the store after an interrupted purge: %v", err)
	}
	if _, err := os.Stat(dir + ".purged"); !os.IsNotExist(err) {
		t.Fatalf("the old directory is still there: %v", err)
	}
}

// Purge leaves out the derived keys under cache/: the merged state's
// snapshot is keyed to the old store's versions, which the copy does not
// keep.
func TestPurgeDropsDerivedKeys(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "hub"), kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(t, s.DB(), PrefixCache+"state/head", "h")
	put(t, s.DB(), "f/s1/k1/x", "fact")
	if err := s.Purge(); err != nil {
		t.Fatal(err)
	}
	err = s.DB().View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(PrefixCache + "state/head")); err != badger.ErrKeyNotFound {
			return fmt.Errorf("the snapshot head after Purge: %v", err)
		}
		_, err := txn.Get([]byte("f/s1/k1/x"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
