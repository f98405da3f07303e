package state

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/merge"
)

// The merged state's snapshot, so a start reads it and the facts stored
// after it instead of every fact ever stored:
//
//	cache/state/head            snapHead: where the snapshot is and what it covers
//	cache/state/{gen:8}/{n:8}   the encoded state in chunks (a value must fit
//	                            in one Badger transaction)
//
// A snapshot covers every fact committed up to the store's read mark
// (Badger's read timestamp, PostgreSQL's record version sequence): it is
// taken while no fact can be written (writeMu), and a fact key committed
// later carries a higher version, so a start folds exactly the fact keys
// whose version is above it. Merging is idempotent, so a fact
// folded twice changes nothing. Keys under cache/ are derived: a store
// rewrite (Purge) drops them, and the versions start over with it.
const (
	keySnapHead    = store.PrefixCache + "state/head"
	prefixSnapData = store.PrefixCache + "state/"
	snapChunk      = 1 << 20
	// snapFormat changes whenever the snapshot's layout or what it means
	// does: a snapshot of another format is ignored (full rebuild).
	snapFormat = 1
)

type snapHead struct {
	Format int       `cbor:"1,keyasint"`
	Build  string    `cbor:"2,keyasint"` // the hub build that wrote it: merge rules may differ in another
	ReadTs uint64    `cbor:"3,keyasint"` // every fact committed up to here is in it
	Gen    uint64    `cbor:"4,keyasint"`
	Chunks int       `cbor:"5,keyasint"`
	Size   int       `cbor:"6,keyasint"`
	Sum    []byte    `cbor:"7,keyasint"` // SHA-256 of the encoded state
	Sites  []string  `cbor:"8,keyasint,omitempty"`
	Taken  time.Time `cbor:"9,keyasint"`
}

func snapChunkKey(gen uint64, n int) []byte {
	return kv.Key(prefixSnapData, kv.U64(gen), []byte("/"), kv.U64(uint64(n)))
}

// Snapshot writes the merged state as it is now, for the next start.
func (s *State) Snapshot() error {
	s.lockWrite()
	if s.opts.Hold > 0 {
		if err := s.evict(); err != nil {
			// The snapshot is still worth writing: nothing left memory.
			s.log.Error("archive cold entities", "err", err)
		}
	}
	readTs, err := s.opts.Store.ReadMark()
	if err != nil {
		s.writeMu.Unlock()
		return fmt.Errorf("snapshot merged state: %w", err)
	}
	s.mu.RLock()
	data, err := s.merged.Encode()
	sites := slices.Sorted(maps.Keys(s.sites))
	s.mu.RUnlock()
	s.writeMu.Unlock()
	if err != nil {
		return fmt.Errorf("snapshot merged state: %w", err)
	}
	return s.writeSnapshot(data, readTs, sites)
}

// writeSnapshot stores the chunks under a new generation, then the head
// that names them (one key: a crash before it leaves the last snapshot in
// force), then deletes every other generation's chunks.
func (s *State) writeSnapshot(data []byte, readTs uint64, sites []string) error {
	db := s.opts.Store
	var old *snapHead
	if h, _, err := readSnapHead(db); err == nil {
		old = h
	}
	gen := uint64(time.Now().UnixNano())
	if old != nil && gen <= old.Gen {
		gen = old.Gen + 1
	}
	sum := sha256.Sum256(data)
	head := snapHead{Format: snapFormat, Build: s.opts.Build, ReadTs: readTs, Gen: gen, Size: len(data), Sum: sum[:],
		Sites: sites, Taken: time.Now().UTC()}
	// A chunk a batch: a PostgreSQL transaction sends its writes at its
	// commit, and one of the whole state held all of it at once.
	for off := 0; off < len(data) || head.Chunks == 0; off += snapChunk {
		wb := db.NewBatch()
		wb.Set(snapChunkKey(gen, head.Chunks), data[off:min(off+snapChunk, len(data))])
		if err := wb.Commit(); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
		head.Chunks++
	}
	val, err := event.Marshal(head)
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	wb := db.NewBatch()
	wb.Set([]byte(keySnapHead), val)
	if err := wb.Commit(); err != nil {
		return fmt.Errorf("write snapshot head: %w", err)
	}
	return s.dropChunks(gen)
}

// dropChunks deletes the chunks of every generation but keep.
func (s *State) dropChunks(keep uint64) error {
	db := s.opts.Store
	var stale [][]byte
	mine := kv.Key(prefixSnapData, kv.U64(keep), []byte("/"))
	err := db.View(func(v store.View) error {
		return v.Scan([]byte(prefixSnapData), nil, 0, func(k, _ []byte, _ uint64) (bool, error) {
			if !bytes.Equal(k, []byte(keySnapHead)) && !bytes.HasPrefix(k, mine) {
				stale = append(stale, k)
			}
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("drop old snapshots: %w", err)
	}
	if len(stale) == 0 {
		return nil
	}
	wb := db.NewBatch()
	for _, k := range stale {
		wb.Delete(k)
	}
	if err := wb.Commit(); err != nil {
		return fmt.Errorf("drop old snapshots: %w", err)
	}
	return nil
}

// readSnapHead reads the head and its key's own version.
func readSnapHead(db store.Backend) (*snapHead, uint64, error) {
	var h snapHead
	var version uint64
	err := db.View(func(v store.View) error {
		val, ver, err := v.Get([]byte(keySnapHead))
		if err != nil {
			return err
		}
		version = ver
		return event.UnmarshalOwn(val, &h)
	})
	if err != nil {
		return nil, 0, err
	}
	return &h, version, nil
}

// errNoSnapshot is a store without a snapshot: a full rebuild, unlogged.
var errNoSnapshot = errors.New("no snapshot")

// readSnapshot loads the snapshot if it can be trusted, and the read
// mark it covers. Any doubt is an error, and the caller rebuilds from
// every fact.
func (s *State) readSnapshot(v store.View) (*merge.State, *snapHead, error) {
	val, version, err := v.Get([]byte(keySnapHead))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errNoSnapshot
	}
	if err != nil {
		return nil, nil, err
	}
	var h snapHead
	if err := event.UnmarshalOwn(val, &h); err != nil {
		return nil, nil, fmt.Errorf("head: %w", err)
	}
	switch {
	case h.Format != snapFormat:
		return nil, nil, fmt.Errorf("format %d, this hub reads %d", h.Format, snapFormat)
	case h.Build != s.opts.Build:
		return nil, nil, fmt.Errorf("written by build %q, this is %q", h.Build, s.opts.Build)
	case version <= h.ReadTs:
		// The head is written after the read it records: a store whose
		// versions started over (rewritten) cannot say what came after.
		return nil, nil, fmt.Errorf("head version %d not above its read mark %d", version, h.ReadTs)
	}
	data := make([]byte, 0, h.Size)
	for n := range h.Chunks {
		chunk, _, err := v.Get(snapChunkKey(h.Gen, n))
		if err != nil {
			return nil, nil, fmt.Errorf("chunk %d: %w", n, err)
		}
		data = append(data, chunk...)
	}
	if sum := sha256.Sum256(data); len(data) != h.Size || !bytes.Equal(sum[:], h.Sum) {
		return nil, nil, fmt.Errorf("checksum mismatch (%d bytes, want %d)", len(data), h.Size)
	}
	m, err := merge.Decode(data)
	if err != nil {
		return nil, nil, err
	}
	return m, &h, nil
}
