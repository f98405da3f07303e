// Package merge folds edge events and hub decisions into one community state, order-free.
//
// # Facts and state
//
// The hub's merged state is a pure function of a set of facts: edge events
// (tagged with the site of the device that sent them) and the hub's own
// decision events (kinds >= event.FirstHubKind). State.Apply folds one fact
// in and is commutative, associative and idempotent: any permutation,
// duplication or regrouping of the same facts gives byte-identical
// State.Encode output. To get there every entity keeps the facts it depends
// on in canonical form (sorted slices, maps with sortable keys, or the
// winner of a register) and recomputes its derived fields from them alone;
// nothing depends on arrival order. A fact is identified by (device, seq):
// the hub's ingest deduplicates and never passes two different facts under
// one id.
//
// Facts are ordered, where order matters, by their key (HLC, device, seq):
// HLC first, ties by device id, then by sequence number.
//
// # Merge rules
//
//   - Reports are created by a report event (id = the event's id). Status
//     moves submitted → accepted → in_progress → resolved, or to rejected,
//     only by ReportPatch decisions folded in key order; a patch that is not
//     a legal transition from the status reached so far leaves the status
//     alone (its note and assignee still count). Note and assignee are
//     last-writer-wins registers by key; an empty field in a patch leaves
//     the register as it is. Patches and votes that arrive before their
//     report are kept and count once it arrives.
//   - Votes ("me too") are a grow-only set of residents per report. The
//     reporter's own vote is not counted: filing the report already says
//     "me too", so Votes counts the other residents who agree.
//   - Ratings: per (target, resident) the rating with the greatest key
//     counts; a target keeps their count, sum and mean.
//   - Alarms, keyed by site, source (sensor or door) and kind, fold their
//     raises (alarm events with active=true, access events with result
//     "forced"), clears (active=false, AlarmClear) and acknowledgements in
//     key order: a raise opens an episode (first raised), a clear later in
//     key order closes it, an AlarmAck marks the open episode acknowledged.
//   - Notices are last-writer-wins by key per notice id; expiry is data and
//     queries take now as a parameter.
//   - Attendance: check-ins are a grow-only set. Per (activity, resident),
//     in key order, each check-out pairs with the latest check-in since the
//     previous check-out (a repeated tap restarts the clock); a check-out
//     with no open check-in and a check-in never closed add nothing. Hours
//     are the sum of those pairs' wall-clock spans in milliseconds.
//
// # Seats: escrow
//
// An activity with capacity C is a bounded counter split into escrow. The
// hub grants each kiosk of the site a share (Grant, cumulative per kiosk)
// and keeps the rest as its reserve. A kiosk (see Ledger) confirms at once,
// offline too, while its share lasts and waitlists the rest; its answer is
// the check-in's Status. A confirmation, by a kiosk or by the hub's
// Promote, is a fact and is never revoked.
//
// The hub counts, per activity:
//
//	seated   = residents confirmed and not checked out
//	used_k   = distinct residents with a "confirmed" check-in from kiosk k
//	held_k   = granted_k - returned_k (returned: from the kiosk's releases)
//	unused_k = max(0, held_k - used_k)
//	reserve  = C - seated - Σ unused_k
//
// The hub only hands out seats from a positive reserve. Everything the hub
// does not know yet errs on the safe side: a kiosk's undelivered
// confirmations still count as unused seats of that kiosk (a release's own
// Used is shown but never counted, or those seats would be freed while
// their residents are on their way), and an undelivered release still
// counts as held, so the reserve never promises a seat a kiosk may still
// give away and seated never exceeds C. The formula also frees seats where
// the ledgers over-count: a resident confirmed at two kiosks holds one seat
// (both kiosks' used_k count them, seated counts them once), and a
// resident who checks out gives their seat up for good (they stay
// confirmed, and a later check-in of theirs takes no seat).
//
// Decide is the hub's policy, a pure function of the state. Per activity of
// the site, not yet ended:
//
//  1. Promote waitlisted and recorded residents who have not checked out,
//     in key order of their first check-in, while the reserve is positive.
//  2. If residents are still waiting (or capacity was lowered below what is
//     out), Recall every kiosk still holding unused seats; each answers
//     with a release (see Ledger.Sync) that moves them to the reserve, and
//     the next Decide promotes from there.
//  3. Otherwise Grant each listed kiosk that has no grant yet
//     floor(C*KioskShare/100)/n seats (n kiosks listed), bounded by the
//     reserve. Kiosks are never granted again after their first grant.
//
// An activity with capacity 0 has no limit: kiosks confirm everyone and the
// hub promotes every recorded check-in. The hub records each decision as an
// event and applies it before it calls Decide again; replaying facts never
// decides anything.
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
	ratings    map[string]*ratings // by target: report or activity id
}

// New returns an empty state.
func New() *State {
	return &State{
		reports:    map[string]*report{},
		activities: map[string]*activity{},
		notices:    map[string]*notice{},
		alarms:     map[string]*alarm{},
		ratings:    map[string]*ratings{},
	}
}

// Apply folds one fact into the state and returns the entities it
// changed; a fact already merged changes nothing. An invalid fact returns
// an error wrapping ErrInvalid and leaves the state as it was.
func (s *State) Apply(f Fact) ([]Ref, error) {
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
		return s.applyReport(f.Site, k, b), nil
	case *event.Vote:
		return s.applyVote(k, b), nil
	case *event.ReportPatch:
		return s.applyPatch(k, b), nil
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
		return s.applyAlarm(f.Site, b.Sensor, b.Type, alarmFact{Key: k, Op: op, Building: b.Building, Value: b.Value}), nil
	case *event.Access:
		if b.Result != "forced" {
			return nil, nil // door decisions are the hub's log, not merged state
		}
		return s.applyAlarm(f.Site, b.Door, "forced", alarmFact{Key: k, Op: opRaise, Building: b.Building}), nil
	case *event.AlarmAck:
		return s.applyAlarm(b.Site, b.Source, b.Type, alarmFact{Key: k, Op: opAck, Who: b.Who, Note: b.Note}), nil
	case *event.AlarmClear:
		return s.applyAlarm(b.Site, b.Source, b.Type, alarmFact{Key: k, Op: opClear, Who: b.Who, Note: b.Note}), nil
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
	Reports    map[string]*report   `cbor:"1,keyasint,omitempty"`
	Activities map[string]*activity `cbor:"2,keyasint,omitempty"`
	Notices    map[string]*notice   `cbor:"3,keyasint,omitempty"`
	Alarms     map[string]*alarm    `cbor:"4,keyasint,omitempty"`
	Ratings    map[string]*ratings  `cbor:"5,keyasint,omitempty"`
}

// Encode is the state as deterministic CBOR: equal states give equal
// bytes, whatever the order their facts were applied in.
func (s *State) Encode() ([]byte, error) {
	data, err := event.Marshal(wire{s.reports, s.activities, s.notices, s.alarms, s.ratings})
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
	maps.Copy(s.ratings, w.Ratings)
	return s, nil
}

// View returns the downlink view of the entity ref names: a ReportView,
// ActivityView, NoticeView or AlarmView. It is false for entities that do
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
		v, err = s.Notice(ref.ID)
	case RefAlarm:
		v, err = s.Alarm(ref.ID)
	default:
		return nil, false
	}
	return v, err == nil
}

// sortedKeys lists a map's keys in order, so every query is deterministic.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
