// Package kv opens Badger the way Linli needs it everywhere: synced writes,
// a memory profile per machine class, logs through slog, and a value-log GC
// loop that stops with its context.
package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Profile sizes Badger's memory for the machine it runs on.
type Profile string

// ErrTrimUnsupported is returned by TrimMapped where the system cannot
// page out mapped files.
var ErrTrimUnsupported = errors.New("paging out mapped tables is not supported here")

// Profiles. Small fits a Raspberry Pi-class gateway or kiosk (the edge's
// 64 MiB target); Server is for the hub.
const (
	Small  Profile = "small"
	Server Profile = "server"
)

// ParseProfile checks a profile name from config.
func ParseProfile(s string) (Profile, error) {
	switch Profile(s) {
	case Small, Server:
		return Profile(s), nil
	}
	return "", fmt.Errorf("%q is not %q or %q", s, Small, Server)
}

// MemoryLimit is the soft limit for the Go heap (debug.SetMemoryLimit) a
// process with this profile should run with, or 0 for none. A small board's
// edge keeps its heap near what it uses: a memtable flush or a compaction
// briefly holds a few times a table in builder buffers, and with only the
// default GC target the heap grew to twice that around every flush
// (measured draining a 1,000,000-event backlog: 103 MiB anonymous peak
// without the limit, 38 MiB with a 48 MiB one). With the small profile's
// tables (see Options) the live heap stays lower, and the limit came down
// with it. Measured in alternating runs (1,000,000-event drain, peak RSS
// highest of 3; edge CPU per HTTP write and per drained event), Snappy
// tables: 48 MiB 56-63 MiB; 40 MiB 53-62 MiB, 27-38 µs, 1.1-3.1 µs; 32 MiB
// 47-56 MiB, but 38-40 µs (the heap sits at the limit while memtables flush
// under load and the GC runs all the time). Uncompressed tables allocate
// far less (no block is decompressed into a new buffer): 36 MiB 52-58 MiB,
// 26-29 µs, 1.2 µs; 32 MiB 57 MiB, 33 µs, 2.4 µs.
//
// The server profile's limit bounds bursts, not the hub's working size: it
// sits well above what a hub holds under load (memtable arenas of 83 MiB
// each, up to NumMemtables of them while flushes lag, and the fan-in's
// peak of about 250-360 MiB RSS), so the collector does not run harder in
// normal work, and far under the GiB a start against freshly written
// tables reached while compacting them without one.
func (p Profile) MemoryLimit() int64 {
	switch p {
	case Small:
		return 36 << 20
	case Server:
		return 512 << 20
	}
	return 0
}

// inlineValues is the server profile's value threshold, Badger's own
// default and maximum: values up to 1 MiB stay in the LSM tree and its WAL.
// Badger logs and ignores a failed sync of its value log (valueLog.write),
// so a commit whose value went there could succeed with the value not on
// disk; a failed WAL sync does fail the commit. Found by the fault suite's
// I/O error test: an acked report was lost and the edge could not sync
// again.
const inlineValues = 1 << 20

// SmallInline is the small profile's value threshold. Badger requires it
// under its largest transaction (15 % of the 4 MiB memtable, 614 KiB), and
// every value an edge writes stays below it: events (64 KiB bodies at
// most), the replica's pieces, PutLarge's pieces. A value at or above it
// would go to the value log, whose failed syncs Badger ignores.
const SmallInline = 512 << 10

// Options builds Badger options for dir. SyncWrites is always on: a kiosk
// loses power without warning, and a 2xx promises the event is on disk.
func Options(dir string, p Profile, log *slog.Logger) badger.Options {
	o := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(logger{log.With("component", "badger")}).
		WithLoggingLevel(badger.WARNING).
		WithCompression(options.Snappy).
		WithDetectConflicts(false) // single-writer keyspaces; conflict tracking is only cost
	switch p {
	case Server:
		o = o.WithMemTableSize(64 << 20).
			WithBlockCacheSize(64 << 20).
			WithValueLogFileSize(256 << 20).
			WithNumMemtables(3).
			WithValueThreshold(inlineValues)
	default:
		// Measured here: defaults peak near 390 MiB. An edge draining a
		// million-event backlog peaked at 57-82 MiB RSS with 8 MiB memtables
		// and tables doubling per level; heap profiles at the peaks held a
		// memtable flush's table builder (20-28 MiB for one 8 MiB memtable:
		// Badger's builder buffers double from twice the table size and
		// keep room for each block's compressed copy) or, with 4 MiB
		// memtables, a compaction's builders for 4-8 MiB tables of the lower
		// levels. 4 MiB memtables and 2 MiB tables on every level
		// (TableSizeMultiplier 1) bound both: 53-62 MiB (with MemoryLimit).
		// Tables are not compressed: a builder then needs no room for
		// compressed blocks (its first buffer holds a whole table), and a
		// read maps a block instead of decompressing it into a new buffer,
		// which made the GC run often under the heap limit (21 % of the
		// edge's CPU in a drain). The drain costs 1.2 µs/event steadily
		// instead of 1.1-3.1, the peak is 52-58 MiB (mapped files 21 -> 31
		// MiB, the heap 35-43 -> 26-29 MiB), and the store takes about twice
		// the disk (~76 MiB for 1,000,000 events). Badger records each
		// table's compression, so stores written with Snappy still open.
		// Values stay inline (see SmallInline).
		o = o.WithMemTableSize(4 << 20).
			WithBlockCacheSize(4 << 20).
			WithIndexCacheSize(4 << 20).
			WithValueLogFileSize(16 << 20).
			WithNumMemtables(2).
			WithNumLevelZeroTables(2).
			WithNumLevelZeroTablesStall(6).
			WithBaseTableSize(2 << 20).
			WithNumCompactors(2).
			WithValueThreshold(SmallInline).
			WithValueLogMaxEntries(100_000)
		o.TableSizeMultiplier = 1
		o.Compression = options.None
	}
	return o
}

// ErrLocked means another process holds the directory.
var ErrLocked = errors.New("data directory is in use by another process")

// Open opens (creating if needed) the Badger directory dir.
func Open(dir string, p Profile, log *slog.Logger) (*badger.DB, error) {
	return OpenWith(Options(dir, p, log))
}

// OpenWith is Open with options built by Options and then adjusted.
func OpenWith(o badger.Options) (*badger.DB, error) {
	dir := o.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if !o.ReadOnly && !o.InMemory {
		if err := removeEmptyLogs(dir, o.Logger); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	db, err := badger.Open(o)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("open store %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return db, nil
}

// removeEmptyLogs deletes memtable write-ahead logs (.mem) and value logs
// (.vlog) of zero length. Badger creates one of each on every open (and a
// .mem on every memtable rotation) and sizes it with ftruncate, which
// becomes durable only with the first synced write into it; a power cut
// before that leaves an empty file, which Badger then refuses to open
// ("Create a new file"), although it never held a byte: with SyncWrites
// nothing can refer to a log that was never synced. Found by the fault
// suite's power-cut test (shared/test/faults).
func removeEmptyLogs(dir string, log badger.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".mem") || strings.HasSuffix(e.Name(), ".vlog")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if info.Size() != 0 {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove empty log %s: %w", path, err)
		}
		if log != nil {
			log.Warningf("removed empty log %s left by a power cut before its first sync", path)
		}
	}
	return nil
}

// RunGC runs value-log GC every interval until ctx ends. Each round repeats
// while Badger finds files worth rewriting, as its docs advise.
func RunGC(ctx context.Context, db *badger.DB, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			err := db.RunValueLogGC(0.5)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					log.Warn("value log gc", "err", err)
				}
				break
			}
		}
	}
}

type logger struct{ l *slog.Logger }

func (l logger) Errorf(f string, a ...any)   { l.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (l logger) Warningf(f string, a ...any) { l.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (l logger) Infof(f string, a ...any)    { l.l.Info(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (l logger) Debugf(f string, a ...any)   { l.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...))) }

// U64 encodes n big-endian, so byte order is numeric order in keys.
func U64(n uint64) []byte {
	return []byte{byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// ParseU64 decodes U64; short input is 0.
func ParseU64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// Key concatenates a prefix and parts into a new slice.
func Key(prefix string, parts ...[]byte) []byte {
	n := len(prefix)
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	k = append(k, prefix...)
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

// GetU64 reads a big-endian counter; a missing key is 0.
func GetU64(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n uint64
	err = item.Value(func(v []byte) error { n = ParseU64(v); return nil })
	return n, err
}

// DeletePrefix deletes, inside txn, every key that starts with prefix
// (keys only are read). Unlike DB.DropPrefix it is part of the caller's
// transaction, so it suits small sets that must change atomically with
// other writes.
func DeletePrefix(txn *badger.Txn, prefix []byte) error {
	for _, k := range prefixKeys(txn, prefix) {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// prefixKeys lists the keys under prefix (keys only are read).
func prefixKeys(txn *badger.Txn, prefix []byte) [][]byte {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	return keys
}

// DeleteAll deletes every key under prefix, in as many transactions as
// that takes (DeletePrefix's one transaction holds only ~6,500 deletes
// with the small profile), and returns how many it deleted. It is not
// atomic: a crash part-way leaves some of the keys.
func DeleteAll(db *badger.DB, prefix []byte) (int, error) {
	var keys [][]byte
	if err := db.View(func(txn *badger.Txn) error { keys = prefixKeys(txn, prefix); return nil }); err != nil {
		return 0, err
	}
	return len(keys), DeleteKeys(db, keys)
}

// DeleteKeys deletes keys in as many transactions as that takes (a Badger
// write batch), synced. It is not atomic.
func DeleteKeys(db *badger.DB, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}
