package merge

import (
	"errors"
	"fmt"
	"slices"

	"linli/shared/event"
	"linli/shared/hlc"
)

// Archive holds the entities Evict took out of memory: closed or rejected
// reports and ended activities nothing has touched for a while, each
// encoded whole with its ratings. Years of a community's history are
// mostly such entities; held in memory, the hub's heap grew with history.
//
// The state reads an archived entity back when a fact touches it (then it
// stays in memory until it is cold again) and reads it, without keeping
// it, when a query asks for it. The result of every fold and query is the
// same as if the entity had never left memory.
type Archive interface {
	// Get returns the archived entity of kind (RefReport, RefActivity) and
	// id, or nil data when the archive does not hold it.
	Get(kind, id string) ([]byte, error)
	// Scan calls f with the archived entities of kind in id order until f
	// returns false.
	Scan(kind string, f func(id string, data []byte) bool) error
	// Sites lists the sites of archived entities (Archived.Site).
	Sites() ([]string, error)
	// Numbered lists the archived reports of site filed with this short
	// number (Archived.Number); it may name more than hold it now.
	Numbered(site, number string) ([]string, error)
}

// ErrArchive wraps a failure to read the archive while folding facts: the
// fold is then incomplete, and the caller must not commit it.
var ErrArchive = errors.New("merged state archive")

// Archived is one entity Evict took out of memory, to be stored in the
// archive under Kind and ID in the same commit.
type Archived struct {
	Kind string
	ID   string
	Data []byte
	// Site and, for a report, Number index it: the hub's list of sites
	// and a resident's look-up by number must not read the whole archive.
	Site   string
	Number string
}

// archived is the encoded form of an archived entity: the entity and the
// residents' ratings of it, which fold with it.
type archived struct {
	Report   *report   `cbor:"1,keyasint,omitempty"`
	Activity *activity `cbor:"2,keyasint,omitempty"`
	Ratings  *ratings  `cbor:"3,keyasint,omitempty"`
}

// SetArchive names the archive evicted entities are read back from; nil
// (the default) keeps every entity in memory.
func (s *State) SetArchive(a Archive) { s.archive = a }

// Evict is Cold and Forget at once.
func (s *State) Evict(before hlc.Timestamp) ([]Archived, error) {
	out, err := s.Cold(before)
	if err != nil {
		return nil, err
	}
	s.Forget(out)
	return out, nil
}

// Cold encodes for the archive every report that is resolved or rejected
// and every activity that ended (or was cancelled) whose last fact is
// older than before, each with its ratings. Reports in a merge group
// stay: their views follow each other. It only reads the state: the
// caller stores the result in the archive, commits, and then Forgets it,
// with no fact folded in between, so that readers find each entity in
// memory or in the archive at every moment.
func (s *State) Cold(before hlc.Timestamp) ([]Archived, error) {
	if s.batch != nil {
		return nil, errors.New("evict during a batch")
	}
	var out []Archived
	ix := s.index()
	for _, id := range sortedKeys(s.reports) {
		r := s.reports[id]
		if !r.cold(before) || len(r.Merges) > 0 || len(ix.steps[id]) > 0 {
			continue
		}
		rs := s.ratings[id]
		if rs != nil && rs.Updated >= before {
			continue
		}
		data, err := event.Marshal(archived{Report: r, Ratings: rs})
		if err != nil {
			return nil, fmt.Errorf("archive report %s: %w", id, err)
		}
		out = append(out, Archived{Kind: RefReport, ID: id, Data: data, Site: r.Site, Number: r.Filed.Body.Number})
	}
	for _, id := range sortedKeys(s.activities) {
		a := s.activities[id]
		if !a.cold(before) {
			continue
		}
		rs := s.ratings[id]
		if rs != nil && rs.Updated >= before {
			continue
		}
		data, err := event.Marshal(archived{Activity: a, Ratings: rs})
		if err != nil {
			return nil, fmt.Errorf("archive activity %s: %w", id, err)
		}
		out = append(out, Archived{Kind: RefActivity, ID: id, Data: data, Site: a.site()})
	}
	return out, nil
}

// Forget drops from memory the entities Cold returned, once the archive
// holds them.
func (s *State) Forget(out []Archived) {
	for _, e := range out {
		switch e.Kind {
		case RefReport:
			delete(s.reports, e.ID)
		case RefActivity:
			delete(s.activities, e.ID)
		}
		delete(s.ratings, e.ID)
	}
}

// cold says whether a report is closed and no fact of it is as recent as
// before.
func (r *report) cold(before hlc.Timestamp) bool {
	if r.Filed == nil || r.Status != event.ReportResolved && r.Status != event.ReportRejected {
		return false
	}
	last := max(r.Updated, r.Filed.Key.HLC)
	for _, p := range r.Patches {
		last = max(last, p.Key.HLC)
	}
	for _, k := range r.Voters {
		last = max(last, k.HLC)
	}
	return last < before
}

// cold says whether an activity has ended (or was cancelled) and no fact
// of it is as recent as before. An open-ended activity stays.
func (a *activity) cold(before hlc.Timestamp) bool {
	if a.Def == nil {
		return false
	}
	d := &a.Def.Set
	if !d.Cancelled && (d.End == 0 || d.End >= before.WallMillis()) {
		return false
	}
	last := max(a.Updated, a.Def.Key.HLC)
	for _, c := range a.Checkins {
		last = max(last, c.Key.HLC)
	}
	for _, p := range a.Promotes {
		last = max(last, p.Key.HLC)
	}
	return last < before
}

// decodeArchived decodes an archived entity.
func decodeArchived(kind, id string, data []byte) (*archived, error) {
	var e archived
	if err := stateDec.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: decode %s %s: %w", ErrArchive, kind, id, err)
	}
	if kind == RefReport && (e.Report == nil || e.Report.ID != id) || kind == RefActivity && (e.Activity == nil || e.Activity.ID != id) {
		return nil, fmt.Errorf("%w: %s %s: the archive holds another entity", ErrArchive, kind, id)
	}
	return &e, nil
}

// held says whether the entity is in memory.
func (s *State) held(kind, id string) bool {
	switch kind {
	case RefReport:
		return s.reports[id] != nil
	case RefActivity:
		return s.activities[id] != nil
	}
	return true
}

// pageIn brings an archived entity back into memory before a fact folds
// into it. A failure is kept for ApplyBatch to return: the fact then
// folds into a fresh entity, and the commit must not go ahead.
func (s *State) pageIn(kind, id string) {
	if s.archive == nil || s.held(kind, id) {
		return
	}
	data, err := s.archive.Get(kind, id)
	if err == nil && data == nil {
		return
	}
	var e *archived
	if err == nil {
		e, err = decodeArchived(kind, id, data)
	}
	if err != nil {
		s.archiveErr = errors.Join(s.archiveErr, fmt.Errorf("%w: read %s %s: %w", ErrArchive, kind, id, err))
		return
	}
	s.put(e, id)
}

func (s *State) put(e *archived, id string) {
	if e.Report != nil {
		s.reports[id] = e.Report
	}
	if e.Activity != nil {
		s.activities[id] = e.Activity
	}
	if e.Ratings != nil {
		s.ratings[id] = e.Ratings
	}
}

// fromArchive returns a state holding only the archived entity, for a
// query about an entity not in memory; nil when the archive does not hold
// it either (or cannot be read: the query then finds nothing).
func (s *State) fromArchive(kind, id string) *State {
	if s.archive == nil || s.held(kind, id) {
		return nil
	}
	data, err := s.archive.Get(kind, id)
	if err != nil || data == nil {
		return nil
	}
	return loneState(kind, id, data)
}

func loneState(kind, id string, data []byte) *State {
	e, err := decodeArchived(kind, id, data)
	if err != nil {
		return nil
	}
	t := New()
	t.put(e, id)
	return t
}

// scanArchive calls f with each archived entity of kind that is not in
// memory, in id order, as a state holding it alone.
func (s *State) scanArchive(kind string, f func(id string, t *State)) {
	if s.archive == nil {
		return
	}
	// A read error ends the list early; the archive logs it.
	_ = s.archive.Scan(kind, func(id string, data []byte) bool {
		if s.held(kind, id) {
			return true // memory is newer
		}
		if t := loneState(kind, id, data); t != nil {
			f(id, t)
		}
		return true
	})
}

// mergeByID merges two lists sorted by id, keeping their order.
func mergeByID[T any](a, b []T, id func(T) string) []T {
	if len(b) == 0 {
		return a
	}
	out := append(a, b...)
	slices.SortStableFunc(out, func(x, y T) int {
		switch {
		case id(x) < id(y):
			return -1
		case id(x) > id(y):
			return 1
		}
		return 0
	})
	return out
}

// EncodeAll is Encode of the state with every archived entity back in
// it: what the state would encode to had nothing ever been evicted.
func (s *State) EncodeAll() ([]byte, error) {
	if s.archive == nil {
		return s.Encode()
	}
	full := &State{reports: map[string]*report{}, activities: map[string]*activity{}, notices: s.notices,
		alarms: s.alarms, ratings: map[string]*ratings{}, access: s.access}
	for k, v := range s.reports {
		full.reports[k] = v
	}
	for k, v := range s.activities {
		full.activities[k] = v
	}
	for k, v := range s.ratings {
		full.ratings[k] = v
	}
	for _, kind := range []string{RefReport, RefActivity} {
		var err error
		serr := s.archive.Scan(kind, func(id string, data []byte) bool {
			if s.held(kind, id) {
				return true
			}
			var e *archived
			if e, err = decodeArchived(kind, id, data); err != nil {
				return false
			}
			full.put(e, id)
			return true
		})
		if err = errors.Join(err, serr); err != nil {
			return nil, err
		}
	}
	return full.Encode()
}
