package state

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"linli/hub/store"
	"linli/shared/hlc"
)

// The merged state's archive: the reports and activities that left memory
// (merge.Evict), each encoded whole with its ratings.
//
//	cache/archive/{kind}/{id}                  one entity (kind: report, activity)
//	cache/archive/site/{site}                  a site some archived entity is of
//	cache/archive/number/{site}/{number}/{id}  an archived report's short number
//
// An entity is written here, and only then dropped from memory, when the
// snapshot is taken; the snapshot then no longer holds it. Both are
// derived from the facts, under cache/: a store rewrite drops them
// together, and a start that cannot trust the snapshot rebuilds every
// entity from the facts and drops the archive first.
const prefixArchive = store.PrefixCache + "archive/"

// DefaultHold is how long a resolved or rejected report, or an ended
// activity, stays in memory after its last change.
const DefaultHold = 30 * 24 * time.Hour

// archiveBatch bounds one commit of archived entities: a Badger
// transaction must fit its memtable, and a PostgreSQL one holds its writes
// until the commit.
const archiveBatch = 4 << 20

func archiveKey(kind, id string) []byte { return []byte(prefixArchive + kind + "/" + id) }

const (
	archiveSites   = "site"
	archiveNumbers = "number"
)

// archive is merge.Archive on the hub's store. Each call reads in its own
// view of what is committed: entities are archived before they leave
// memory, so a fold or a query that misses memory finds them here.
type archive struct {
	db  store.Backend
	log *slog.Logger
}

func (a archive) Get(kind, id string) ([]byte, error) {
	var out []byte
	err := a.db.View(func(v store.View) error {
		val, _, err := v.Get(archiveKey(kind, id))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out = bytes.Clone(val)
		return nil
	})
	if err != nil {
		a.log.Error("read the merged state's archive", "kind", kind, "id", id, "err", err)
		return nil, fmt.Errorf("archive %s %s: %w", kind, id, err)
	}
	return out, nil
}

func (a archive) Scan(kind string, f func(id string, data []byte) bool) error {
	prefix := archiveKey(kind, "")
	err := a.db.View(func(v store.View) error {
		return v.Scan(prefix, nil, 0, func(key, val []byte, _ uint64) (bool, error) {
			return f(string(key[len(prefix):]), val), nil
		})
	})
	if err != nil {
		a.log.Error("scan the merged state's archive", "kind", kind, "err", err)
		return fmt.Errorf("scan archive of %s: %w", kind, err)
	}
	return nil
}

// names lists the rest of every key under prefix (an index: the values
// are empty).
func (a archive) names(prefix []byte) ([]string, error) {
	var out []string
	err := a.db.View(func(v store.View) error {
		return v.Scan(prefix, nil, 0, func(key, _ []byte, _ uint64) (bool, error) {
			out = append(out, string(key[len(prefix):]))
			return true, nil
		})
	})
	if err != nil {
		a.log.Error("read the merged state's archive index", "prefix", string(prefix), "err", err)
		return nil, fmt.Errorf("archive index %s: %w", prefix, err)
	}
	return out, nil
}

func (a archive) Sites() ([]string, error) { return a.names(archiveKey(archiveSites, "")) }

func (a archive) Numbered(site, number string) ([]string, error) {
	return a.names(archiveKey(archiveNumbers, site+"/"+number+"/"))
}

// evict moves the entities that have been cold for the hold time from
// memory to the archive. Callers hold writeMu, so no fact folds between
// the encoding and the drop.
func (s *State) evict() error {
	before := hlc.New(s.opts.Clock.Now().WallMillis()-s.opts.Hold.Milliseconds(), 0)
	s.mu.Lock() // Cold builds the merge index
	out, err := s.merged.Cold(before)
	s.mu.Unlock()
	if err != nil || len(out) == 0 {
		return err
	}
	for i := 0; i < len(out); {
		b := s.opts.Store.NewBatch()
		size := 0
		for ; i < len(out) && (size == 0 || size+len(out[i].Data) <= archiveBatch); i++ {
			e := &out[i]
			b.Set(archiveKey(e.Kind, e.ID), e.Data)
			if e.Site != "" {
				b.Set(archiveKey(archiveSites, e.Site), []byte{})
			}
			if e.Number != "" {
				// Site ids, numbers and report ids hold no slash.
				b.Set(archiveKey(archiveNumbers, e.Site+"/"+e.Number+"/"+e.ID), []byte{})
			}
			size += len(e.Data)
		}
		if err := b.Commit(); err != nil {
			// What was committed is archived and still in memory too:
			// memory wins, and the next snapshot tries again.
			return fmt.Errorf("archive cold entities: %w", err)
		}
	}
	s.mu.Lock()
	s.merged.SetArchive(archive{db: s.opts.Store, log: s.log})
	s.merged.Forget(out)
	s.mu.Unlock()
	s.log.Info("cold entities archived", "count", len(out), "hold", s.opts.Hold)
	return nil
}

// hasArchived says whether the archive holds any entity.
func hasArchived(v store.View) (bool, error) {
	found := false
	err := v.Scan([]byte(prefixArchive), nil, 0, func([]byte, []byte, uint64) (bool, error) {
		found = true
		return false, nil
	})
	return found, err
}

// dropArchive deletes every archived entity: after a rebuild from every
// fact they are all in memory, and the archive may hold what an erasure
// removed or what another build's rules folded.
func (s *State) dropArchive() error {
	var keys [][]byte
	err := s.opts.Store.View(func(v store.View) error {
		return v.Scan([]byte(prefixArchive), nil, 0, func(k, _ []byte, _ uint64) (bool, error) {
			keys = append(keys, bytes.Clone(k))
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("drop the merged state's archive: %w", err)
	}
	for len(keys) > 0 {
		n := min(len(keys), 10000)
		b := s.opts.Store.NewBatch()
		for _, k := range keys[:n] {
			b.Delete(k)
		}
		if err := b.Commit(); err != nil {
			return fmt.Errorf("drop the merged state's archive: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}
