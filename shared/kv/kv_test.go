package kv

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// A power cut between Badger creating a memtable or value log file and its
// first synced write leaves the file empty; the store must still open, with its data.
func TestOpenAfterEmptyMemtable(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	db, err := Open(dir, Small, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// What the cut leaves: the next memtable and value log files,
	// created but still of size 0.
	for _, name := range []string{"00009.mem", "000009.vlog"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if bdb, err := badger.Open(Options(dir, Small, log)); err == nil {
		t.Log("note: this Badger opens an empty memtable by itself now")
		if err := bdb.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("plain Badger refuses: %v", err)
	}
	db, err = Open(dir, Small, log)
	if err != nil {
		t.Fatalf("open after an empty memtable file: %v", err)
	}
	defer db.Close()
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("k"))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if string(v) != "v" {
				t.Errorf("k = %q", v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// DeletePrefix removes exactly the keys under its prefix, within the
// caller's transaction.
func TestDeletePrefix(t *testing.T) {
	db, err := Open(t.TempDir(), Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys := []string{"a/1", "a/2", "ab/1", "b/1"}
	if err := db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Set([]byte(k), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return DeletePrefix(txn, []byte("a/")) }); err != nil {
		t.Fatal(err)
	}
	var left []string
	if err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			left = append(left, string(it.Item().Key()))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(left, " ") != "ab/1 b/1" {
		t.Fatalf("left %v, want [ab/1 b/1]", left)
	}
}
