package merge

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/fxamacker/cbor/v2"

	"linli/shared/event"
	"linli/shared/hlc"
)

// Errors of the merge.
var (
	// ErrInvalid is a fact the merge cannot use: bad envelope, unknown
	// kind, or a body that does not validate.
	ErrInvalid = errors.New("invalid fact")
	// ErrNotFound is an entity the state does not hold (yet).
	ErrNotFound = errors.New("not found")
	// ErrBadTransition is a report status change the lifecycle forbids.
	ErrBadTransition = errors.New("bad status transition")
)

// Fact is one event to merge together with the site of the device that
// recorded it. Hub decisions name their site in their bodies; Site is
// ignored for them.
type Fact struct {
	Site  string
	Event event.Event
}

// Entity kinds named by a Ref.
const (
	RefReport   = "report"
	RefActivity = "activity"
	RefNotice   = "notice"
	RefAlarm    = "alarm"
)

// Ref names an entity Apply changed, so the hub persists and sends down
// only those. Site is empty while the entity's site is not known yet (a
// patch or vote that arrived before its report).
type Ref struct {
	Kind string
	Site string
	ID   string
}

// key orders facts: HLC, then device, then seq.
type key struct {
	HLC    hlc.Timestamp `cbor:"1,keyasint"`
	Device string        `cbor:"2,keyasint"`
	Seq    uint64        `cbor:"3,keyasint"`
}

func keyOf(e *event.Event) key { return key{HLC: e.HLC, Device: e.Device, Seq: e.Seq} }

func (k key) compare(o key) int {
	if c := cmp.Compare(k.HLC, o.HLC); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Device, o.Device); c != 0 {
		return c
	}
	return cmp.Compare(k.Seq, o.Seq)
}

func (k key) id() string { return event.FormatID(k.Device, k.Seq) }

// insertSorted adds v to the slice sorted by cmpFn unless an equal element
// is there already, reporting whether it added.
func insertSorted[T any](s *[]T, v T, cmpFn func(a, b T) int) bool {
	i, found := slices.BinarySearchFunc(*s, v, cmpFn)
	if found {
		return false
	}
	*s = slices.Insert(*s, i, v)
	return true
}

// State is the hub's merged state. It is not safe for concurrent use; the
// hub serialises Apply and reads under its own lock.
type State struct {
	reports    map[string]*report
	activities map[string]*activity
	notices    map[string]*notice
	alarms     map[string]*alarm
	ratings    map[string]*ratings    // by target: report or activity id
	access     map[string]*accessList // by accesslist.ID(site, building)

	// batch collects the entities ApplyBatch has changed, to recompute
	// each once at its end; nil outside ApplyBatch.
	batch *batch
	// merges is the derived merge graph of reports (reportmerge.go); nil
	// until needed, never encoded.
	merges *mergeIndex

	// archive holds the entities Evict took out of memory (archive.go);
	// archiveErr is a failure to read it back during a fold.
	archive    Archive
	archiveErr error
}

type batch struct {
	reports    []*report
	activities []*activity
	alarms     []*alarm
}

// touchReport recomputes a changed report now, or at the end of the batch.
func (s *State) touchReport(r *report) {
	switch {
	case s.batch == nil:
		s.refoldReport(r)
	case !r.dirty:
		r.dirty = true
		s.batch.reports = append(s.batch.reports, r)
	}
}

// touchActivity recomputes a changed activity now, or at the end of the
// batch.
func (s *State) touchActivity(a *activity) {
	switch {
	case s.batch == nil:
		s.refoldActivity(a)
	case !a.dirty:
		a.dirty = true
		s.batch.activities = append(s.batch.activities, a)
	}
}

// touchAlarm recomputes a changed alarm now, or at the end of the batch.
func (s *State) touchAlarm(a *alarm) {
	switch {
	case s.batch == nil:
		a.refold()
	case !a.dirty:
		a.dirty = true
		s.batch.alarms = append(s.batch.alarms, a)
	}
}

// ApplyBatch applies facts like Apply, one after the other, but recomputes
// each changed entity once at the end rather than after every fact: a
// catch-up of thousands of check-ins into one activity costs linear, not
// quadratic, time. It returns each changed entity once, in the order of
// its first change, and the errors of the facts it skipped as invalid
// (joined; each wraps ErrInvalid). The result is the same as applying the
// facts one by one.
func (s *State) ApplyBatch(facts []Fact) ([]Ref, error) {
	s.batch = &batch{}
	s.archiveErr = nil
	var (
		refs []Ref
		errs []error
		seen = map[Ref]bool{}
	)
	for i := range facts {
		got, err := s.Apply(facts[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range got {
			id := Ref{Kind: r.Kind, ID: r.ID}
			if !seen[id] {
				seen[id] = true
				refs = append(refs, id)
			}
		}
	}
	b := s.batch
	s.batch = nil
	for _, r := range b.reports {
		r.dirty = false
		s.refoldReport(r)
	}
	for _, a := range b.activities {
		a.dirty = false
		s.refoldActivity(a)
	}
	for _, a := range b.alarms {
		a.dirty = false
		a.refold()
	}
	// An entity's site may have become known during the batch (a vote
	// before its report), so refs take it from the entity at the end.
	for i := range refs {
		refs[i].Site = s.site(refs[i])
	}
	if s.archiveErr != nil {
		errs = append(errs, s.archiveErr)
		s.archiveErr = nil
	}
	return refs, errors.Join(errs...)
}

// site is the site of the entity ref names, or "" while unknown.
func (s *State) site(ref Ref) string {
	switch ref.Kind {
	case RefReport:
		if r := s.reports[ref.ID]; r != nil {
			return r.Site
		}
	case RefActivity:
		if a := s.activities[ref.ID]; a != nil {
			return a.site()
		}
	case RefNotice:
		if n := s.notices[ref.ID]; n != nil {
			return n.Set.Site
		}
	case RefAlarm:
		if a := s.alarms[ref.ID]; a != nil {
			return a.Site
		}
	case RefAccess:
		if l := s.access[ref.ID]; l != nil {
			return l.Set.Site
		}
	}
	return ""
}

// New returns an empty state.
func New() *State {
	return &State{
		reports:    map[string]*report{},
		activities: map[string]*activity{},
		notices:    map[string]*notice{},
		alarms:     map[string]*alarm{},
		ratings:    map[string]*ratings{},
		access:     map[string]*accessList{},
	}
}

// Apply folds one fact into the state and returns the entities it
// changed; a fact already merged changes nothing. An invalid fact returns
// an error wrapping ErrInvalid and leaves the state as it was.
func (s *State) Apply(f Fact) ([]Ref, error) {
	refs, err := s.apply(f)
	if s.batch == nil && s.archiveErr != nil {
		err = errors.Join(err, s.archiveErr)
		s.archiveErr = nil
	}
	return refs, err
}

func (s *State) apply(f Fact) ([]Ref, error) {
	ev := &f.Event
	if err := event.ValidID(ev.Device); err != nil {
		return nil, fmt.Errorf("%w: device: %w", ErrInvalid, err)
	}
	if ev.Seq == 0 {
		return nil, fmt.Errorf("%w: event %s: seq must be at least 1", ErrInvalid, ev.ID())
	}
	body, err := ev.Decode()
	if err != nil {
		return nil, fmt.Errorf("%w: event %s: %w", ErrInvalid, ev.ID(), err)
	}
	if !ev.Kind.IsHub() {
		if err := event.ValidID(f.Site); err != nil {
			return nil, fmt.Errorf("%w: event %s: site: %w", ErrInvalid, ev.ID(), err)
		}
	}
	k := keyOf(ev)
	switch b := body.(type) {
	case *event.Report:
		return s.groupRefs(s.applyReport(f.Site, k, b)), nil
	case *event.Vote:
		return s.groupRefs(s.applyVote(k, b)), nil
	case *event.ReportPatch:
		return s.groupRefs(s.applyPatch(k, b)), nil
	case *event.ReportReopen:
		return s.groupRefs(s.applyReopen(k, b)), nil
	case *event.ReportMerge:
		return s.applyReportMerge(k, b), nil
	case *event.ReportFile:
		return s.applyReportFile(k, b), nil
	case *event.Rating:
		return s.applyRating(k, b), nil
	case *event.Checkin:
		return s.applyCheckin(k, b), nil
	case *event.ActivitySet:
		return s.applyActivitySet(k, b), nil
	case *event.Grant:
		return s.applyShare(b.Activity, b.Kiosk, k, func(sh *share) bool { return raise(&sh.Granted, b.Seats) }), nil
	case *event.Recall:
		return s.applyShare(b.Activity, b.Kiosk, k, func(sh *share) bool { return raise(&sh.RecallAt, b.Granted) }), nil
	case *event.Release:
		// A release is the kiosk's own account, so its device is the kiosk.
		return s.applyShare(b.Activity, k.Device, k, func(sh *share) bool {
			// Non-short-circuit: every field must take its maximum.
			g, u, r := raise(&sh.Granted, b.Granted), raise(&sh.ReleasedUsed, b.Used), raise(&sh.Returned, b.Returned)
			return g || u || r
		}), nil
	case *event.Promote:
		return s.applyPromote(k, b), nil
	case *event.NoticeSet:
		return s.applyNotice(k, b), nil
	case *event.Alarm:
		op := opClear
		if b.Active {
			op = opRaise
		}
		return s.applyAlarm(f.Site, b.Sensor, b.Type, alarmFact{Key: k, Op: op, Building: b.Building, Value: b.Value, Place: b.Place}), nil
	case *event.Access:
		if b.Result != "forced" && b.Result != "held_open" {
			return nil, nil // door decisions are the hub's log, not merged state
		}
		// The door's log says it happened; whether the door is still open is
		// the gateway's to report (an alarm event), so this raise is momentary.
		return s.applyAlarm(f.Site, b.Door, b.Result, alarmFact{Key: k, Op: opRaise, Building: b.Building, Place: b.Place, Momentary: true}), nil
	case *event.AlarmAck:
		return s.applyAlarm(b.Site, b.Source, b.Type, alarmFact{Key: k, Op: opAck, Who: b.Who, Note: b.Note}), nil
	case *event.AlarmClear:
		return s.applyAlarm(b.Site, b.Source, b.Type, alarmFact{Key: k, Op: opClose, Who: b.Who, Note: b.Note}), nil
	case *event.AccessListSet:
		return s.applyAccessList(k, b), nil
	}
	// Readings, gaps and kinds this version does not merge: facts the hub
	// keeps in its event log, with no merged state of their own.
	return nil, nil
}

// raise sets *dst to v when v is greater: the merge of a grow-only counter.
func raise(dst *uint32, v uint32) bool {
	if v > *dst {
		*dst = v
		return true
	}
	return false
}

// wire is the encoded form of State. Maps have string keys, which core
// deterministic CBOR sorts, so the bytes depend only on the contents.
type wire struct {
	Reports    map[string]*report     `cbor:"1,keyasint,omitempty"`
	Activities map[string]*activity   `cbor:"2,keyasint,omitempty"`
	Notices    map[string]*notice     `cbor:"3,keyasint,omitempty"`
	Alarms     map[string]*alarm      `cbor:"4,keyasint,omitempty"`
	Ratings    map[string]*ratings    `cbor:"5,keyasint,omitempty"`
	Access     map[string]*accessList `cbor:"6,keyasint,omitempty"`
}

// Encode is the state as deterministic CBOR: equal states give equal
// bytes, whatever the order their facts were applied in.
func (s *State) Encode() ([]byte, error) {
	data, err := event.Marshal(wire{s.reports, s.activities, s.notices, s.alarms, s.ratings, s.access})
	if err != nil {
		return nil, fmt.Errorf("encode merged state: %w", err)
	}
	return data, nil
}

// stateDec decodes a whole state, which may be far larger than the
// message limits event.Unmarshal applies to outside input.
var stateDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxArrayElements: 1 << 30,
		MaxMapPairs:      1 << 30,
		MaxNestedLevels:  16,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("merge: cbor dec mode: %v", err))
	}
	return dm
}()

// Decode restores a state that Encode wrote (the hub's own snapshot, not
// outside input).
func Decode(data []byte) (*State, error) {
	var w wire
	if err := stateDec.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("decode merged state: %w", err)
	}
	s := New()
	maps.Copy(s.reports, w.Reports)
	maps.Copy(s.activities, w.Activities)
	maps.Copy(s.notices, w.Notices)
	maps.Copy(s.alarms, w.Alarms)
	for _, a := range s.alarms {
		a.refold() // fields derived but not stored
	}
	maps.Copy(s.ratings, w.Ratings)
	maps.Copy(s.access, w.Access)
	// Derived fields are recomputed from the facts: a snapshot written
	// before a derived field existed (sign-up and attendance, ratings
	// counted from attendees) reads as the facts say. The fold is pure, so
	// a current snapshot is unchanged by it.
	for _, id := range sortedKeys(s.activities) {
		s.refoldActivity(s.activities[id])
	}
	return s, nil
}

// View returns the downlink view of the entity ref names: a ReportView,
// ActivityView, NoticeView, AlarmView or accesslist.List. It is false for entities that do
// not exist yet (a vote's report that has not arrived).
func (s *State) View(ref Ref) (any, bool) {
	var (
		v   any
		err error
	)
	switch ref.Kind {
	case RefReport:
		v, err = s.ReportView(ref.ID)
	case RefActivity:
		v, err = s.ActivityView(ref.ID)
	case RefNotice:
		var n NoticeView
		if n, err = s.Notice(ref.ID); err == nil && n.Withdrawn {
			return nil, false // off the kiosks: sent down as a deletion
		}
		v = n
	case RefAlarm:
		v, err = s.Alarm(ref.ID)
	case RefAccess:
		v, err = s.AccessList(ref.ID)
	default:
		return nil, false
	}
	return v, err == nil
}

// sortedKeys lists a map's keys in order, so every query is deterministic.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
