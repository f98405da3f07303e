package kv

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// mappedRSS sums the resident kB of this process's mappings of files under
// dir whose names end in suffix, from /proc/self/smaps.
func mappedRSS(t *testing.T, dir, suffix string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	total, inTable := 0, false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			inTable = len(f) >= 6 && strings.HasPrefix(f[5], dir) && strings.HasSuffix(f[5], suffix)
		case inTable && len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			total += n
		}
	}
	return total
}

// writeValues stores keys k/00000000… with val and their number appended,
// a thousand per transaction.
func writeValues(t *testing.T, db *badger.DB, n int, val []byte) {
	t.Helper()
	for i := 0; i < n; i += 1000 {
		err := db.Update(func(txn *badger.Txn) error {
			for j := i; j < min(i+1000, n); j++ {
				if err := txn.Set(fmt.Appendf(nil, "k/%08d", j), fmt.Appendf(val[:len(val):len(val)], "%d", j)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// trimToQuarter trims dir's mappings until at most a quarter of the before
// kB of its suffix files stays resident. MADV_PAGEOUT is a hint: a page
// still under writeback is skipped and taken by a later call, as the
// outbox's loop makes them.
func trimToQuarter(t *testing.T, dir, suffix string, before int) {
	t.Helper()
	var mapped int64
	after := before
	for deadline := time.Now().Add(10 * time.Second); after > before/4; {
		if time.Now().After(deadline) {
			t.Fatalf("%s resident %d kB before, %d kB after trimming %d bytes of mappings", suffix, before, after, mapped)
		}
		var err error
		if mapped, err = TrimMapped(dir); err != nil {
			t.Fatal(err)
		}
		if mapped == 0 {
			t.Fatal("TrimMapped found no mapped files")
		}
		if after = mappedRSS(t, dir, suffix); after > before/4 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("%s resident: %d kB before, %d kB after trimming", suffix, before, after)
}

// Tables read through Badger's maps count in RSS until trimmed; after
// TrimMapped they do not, and the store still reads every value.
func TestTrimMappedGivesBackTablePages(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	db, err := Open(dir, Small, log)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	val := bytes.Repeat([]byte("linli "), 20)
	writeValues(t, db, n, val)
	if err := db.Close(); err != nil { // flushes the memtables into tables
		t.Fatal(err)
	}
	if db, err = Open(dir, Small, log); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	readAll := func() {
		t.Helper()
		seen := 0
		err := db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.DefaultIteratorOptions)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				want := fmt.Appendf(val[:len(val):len(val)], "%d", seen)
				if err := it.Item().Value(func(v []byte) error {
					if !bytes.Equal(v, want) {
						return fmt.Errorf("key %s: value %q", it.Item().Key(), v)
					}
					return nil
				}); err != nil {
					return err
				}
				seen++
			}
			return nil
		})
		if err != nil || seen != n {
			t.Fatalf("read %d of %d values: %v", seen, n, err)
		}
	}
	readAll()
	before := mappedRSS(t, dir, ".sst")
	if before < 1024 {
		t.Fatalf("only %d kB of tables resident after reading %d values; the test measures nothing", before, n)
	}
	trimToQuarter(t, dir, ".sst", before)
	readAll() // the pages come back from the file
}

// A memtable's write-ahead log is written through its map; its pages go
// back too, and a store reopened without a flush replays every write.
func TestTrimMappedGivesBackLogPages(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	db, err := Open(dir, Small, log)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20_000 // about 3 MiB: stays in the memtable and its log
	val := bytes.Repeat([]byte("邻里 "), 20)
	writeValues(t, db, n, val)
	before := mappedRSS(t, dir, ".mem")
	if before < 1024 {
		t.Fatalf("only %d kB of the log resident after writing %d values; the test measures nothing", before, n)
	}
	trimToQuarter(t, dir, ".mem", before)
	// Writes after a trim land in the log as before.
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k/last"), []byte("after trim")) }); err != nil {
		t.Fatal(err)
	}
	// Reopen from the log alone: Badger's replay reads the trimmed pages
	// back from the file. A copy is opened, as after a power cut: closing
	// would flush the memtable into a table first.
	if err := os.CopyFS(dir+"-copy", os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	re, err := Open(dir+"-copy", Small, log)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	seen := 0
	err = re.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			seen++
		}
		item, err := txn.Get([]byte("k/last"))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if string(v) != "after trim" {
				return fmt.Errorf("k/last = %q", v)
			}
			return nil
		})
	})
	if err != nil || seen != n+1 {
		t.Fatalf("replayed %d of %d keys: %v", seen, n+1, err)
	}
}

func TestTrimMappedNoTables(t *testing.T) {
	if n, err := TrimMapped(t.TempDir()); err != nil || n != 0 {
		t.Fatalf("TrimMapped of a dir with no tables = %d, %v; want 0, nil", n, err)
	}
}

// ResidentFile counts a mapped file's pages as they are read, and gives
// them back when TrimMapped pages them out.
func TestResidentFileFollowsMappedPages(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/000001.sst"
	const size = 8 << 20
	if err := os.WriteFile(path, bytes.Repeat([]byte{7}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	before, err := ResidentFile()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for i := 0; i < size; i += os.Getpagesize() {
		sum += int(m[i])
	}
	if sum == 0 {
		t.Fatal("read nothing")
	}
	read, err := ResidentFile()
	if err != nil {
		t.Fatal(err)
	}
	if read-before < size/2 {
		t.Fatalf("resident file pages grew by %d reading %d mapped bytes", read-before, size)
	}
	if _, err := TrimMapped(dir); err != nil {
		t.Fatal(err)
	}
	after, err := ResidentFile()
	if err != nil {
		t.Fatal(err)
	}
	if read-after < size/2 {
		t.Fatalf("resident file pages went from %d to %d after trimming %d mapped bytes", read, after, size)
	}
}
