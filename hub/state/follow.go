package state

import (
	"errors"
	"fmt"
	"time"

	"linli/hub/store"
	"linli/shared/merge"
)

// ErrNotOwned is what a NotOwnedError is.
var ErrNotOwned = errors.New("site held by another worker")

// NotOwnedError refuses an operator decision for a site another worker
// holds: that worker decides for it (its seats, its downlink sequence).
type NotOwnedError struct{ Site string }

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("site %s: held by another worker", e.Site)
}

// Is makes errors.Is(err, ErrNotOwned) hold.
func (e *NotOwnedError) Is(target error) bool { return target == ErrNotOwned }

// owns says whether this hub decides for site.
func (s *State) owns(site string) bool { return s.opts.Owns == nil || s.opts.Owns(site) }

// hubSeqKey is the key of the hub's event counter: one per worker when
// workers share the store (each numbers its own decisions under its own
// device id), the one h/seq of a hub alone.
func (s *State) hubSeqKey() []byte {
	if s.opts.Owns == nil {
		return []byte(keyHubSeq)
	}
	return []byte(keyHubSeq + "/" + s.opts.HubID)
}

// FollowWindow is how far back each Follow reads again: a fact's version
// is drawn when its transaction writes it, and a transaction that
// commits later than one with a higher version is still seen if it
// commits within the window.
const FollowWindow = 5 * time.Second

// follower is where Follow has read up to.
type follower struct {
	marks []markAt          // read marks taken, oldest first
	since uint64            // read facts committed above this
	seen  map[string]uint64 // fact keys folded since `since`, at their version
}

type markAt struct {
	at   time.Time
	mark uint64
}

// reset starts following from a load that read everything committed
// below mark.
func (f *follower) reset(at time.Time, mark uint64) {
	f.marks, f.since, f.seen = []markAt{{at, mark}}, mark, map[string]uint64{}
}

// advance records a mark taken at now and moves since to the newest mark
// taken a FollowWindow ago.
func (f *follower) advance(now time.Time, mark uint64) {
	f.marks = append(f.marks, markAt{now, mark})
	i := 0
	for i+1 < len(f.marks) && !f.marks[i+1].at.After(now.Add(-FollowWindow)) {
		i++
	}
	f.marks = f.marks[i:]
	f.since = f.marks[0].mark
	for k, v := range f.seen {
		if v <= f.since {
			delete(f.seen, k)
		}
	}
}

// Follow folds the facts other workers committed for the sites this one
// does not hold, read-only: no downlink, no seat decision, so the API of
// any worker answers for every site. Call it every half second or so:
// a site's view then trails its owner's by that, plus the commit. It
// reads the facts committed since the window's oldest mark, skipping
// those it has folded.
func (s *State) Follow() error {
	mark, err := s.opts.Store.ReadMark()
	if err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	now := time.Now()
	s.lockWrite()
	since := s.follow.since
	s.writeMu.Unlock()
	var facts []merge.Fact
	seen := map[string]uint64{}
	err = s.opts.Store.View(func(v store.View) error {
		return v.Scan([]byte(prefixFact), nil, since, func(key, val []byte, ver uint64) (bool, error) {
			site := SiteOfKey(key)
			if s.owns(site) {
				return true, nil // its facts are this worker's own
			}
			s.lockWrite()
			done := s.follow.seen[string(key)] == ver
			s.writeMu.Unlock()
			if done {
				return true, nil
			}
			fs, _, err := readFacts(v, key, val)
			if err != nil {
				s.log.Warn("follow: fact not read", "key", key, "err", err)
				return true, nil
			}
			facts = append(facts, fs...)
			seen[string(key)] = ver
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	s.lockWrite()
	defer s.writeMu.Unlock()
	if s.follow.since != since {
		return nil // a load started over meanwhile
	}
	s.foldRead(facts)
	for k, v := range seen {
		s.follow.seen[k] = v
	}
	s.follow.advance(now, mark)
	return nil
}

// LoadSite folds every stored fact of site, read-only: a worker taking a
// site on calls it before deciding for it, so it never folds on top of a
// copy that misses what the site's previous owner committed. (The lease
// it has just taken waited for that owner's last commit.) Facts only
// add to the merged state, and a fact folded twice changes nothing, so
// the site's part is then the store's.
func (s *State) LoadSite(site string) error {
	var facts []merge.Fact
	prefix := []byte(prefixFact + site + "/")
	err := s.opts.Store.View(func(v store.View) error {
		return v.Scan(prefix, nil, 0, func(key, val []byte, _ uint64) (bool, error) {
			fs, _, err := readFacts(v, key, val)
			if err != nil {
				return false, err
			}
			facts = append(facts, fs...)
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("load site %s: %w", site, err)
	}
	s.lockWrite()
	defer s.writeMu.Unlock()
	s.foldRead(facts)
	s.mu.Lock()
	s.sites[site] = true
	s.mu.Unlock()
	return nil
}

// foldRead folds facts others committed: nothing is sent down or
// decided. Callers hold writeMu.
func (s *State) foldRead(facts []merge.Fact) {
	if len(facts) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.merged.ApplyBatch(facts); err != nil {
		s.log.Warn("facts the merge refused", "err", err)
	}
	for _, f := range facts {
		if f.Site != "" {
			s.sites[f.Site] = true
		}
	}
}
