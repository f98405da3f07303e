package merge

import (
	"cmp"
	"fmt"
	"slices"

	"linli/shared/hlc"
)

// Operations on an alarm. opClear is the source clearing (a gateway's
// alarm event with active=false); facts written before the operator's
// clear had its own op carried opClear with the operator's name, and are
// read as opClose.
const (
	opRaise uint8 = 1
	opClear uint8 = 2
	opAck   uint8 = 3
	opClose uint8 = 4
)

// Severities, highest first: fire before water before a forced door before
// a door held open, as a fire panel ranks them.
const (
	SeverityCritical = "critical"
	SeverityMajor    = "major"
	SeverityMinor    = "minor"
	SeverityWarning  = "warning"
)

// severities ranks alarm kinds; a smaller rank is more severe.
var severities = map[string]struct {
	rank int
	name string
}{
	"smoke": {1, SeverityCritical}, "heat": {1, SeverityCritical},
	"water": {2, SeverityMajor}, "forced": {3, SeverityMinor}, "held_open": {4, SeverityWarning},
}

// SeverityRank orders alarm kinds: 1 is the most severe; unknown kinds come
// last.
func SeverityRank(kind string) int {
	if s, ok := severities[kind]; ok {
		return s.rank
	}
	return 9
}

// alarm keeps every raise, clear and acknowledgement of one alarm, so its
// state can be refolded in key order whatever order they arrived in.
type alarm struct {
	dirty bool // waits for refold at the end of a batch

	ID     string      `cbor:"1,keyasint"`
	Site   string      `cbor:"2,keyasint"`
	Source string      `cbor:"3,keyasint"`
	Type   string      `cbor:"4,keyasint"`
	Facts  []alarmFact `cbor:"5,keyasint"` // sorted by key

	// Derived by refold (and on Decode, so older snapshots gain the fields
	// added since).
	Building string        `cbor:"6,keyasint,omitempty"`
	Value    float64       `cbor:"7,keyasint,omitempty"`
	Active   bool          `cbor:"8,keyasint,omitempty"`
	Acked    bool          `cbor:"9,keyasint,omitempty"`
	AckedBy  string        `cbor:"10,keyasint,omitempty"`
	First    hlc.Timestamp `cbor:"11,keyasint,omitempty"` // first raise of the current (or last) episode
	Last     hlc.Timestamp `cbor:"12,keyasint,omitempty"` // latest fact
	Cleared  hlc.Timestamp `cbor:"13,keyasint,omitempty"` // when the source last cleared

	open      bool
	momentary bool
	place     string
	ackedAt   hlc.Timestamp
	ackNote   string
	closed    hlc.Timestamp
	closedBy  string
	trans     []AlarmTransition
}

type alarmFact struct {
	Key      key     `cbor:"1,keyasint"`
	Op       uint8   `cbor:"2,keyasint"`
	Building string  `cbor:"3,keyasint,omitempty"`
	Value    float64 `cbor:"4,keyasint,omitempty"`
	Who      string  `cbor:"5,keyasint,omitempty"`
	Note     string  `cbor:"6,keyasint,omitempty"`
	Place    string  `cbor:"7,keyasint,omitempty"`
	// Momentary: the raise is an event, not a condition (a door forced
	// open): it opens an episode for operators without a source that stays
	// active.
	Momentary bool `cbor:"8,keyasint,omitempty"`
}

func compareAlarmFact(a, b alarmFact) int { return a.Key.compare(b.Key) }

// AlarmID names an alarm: site, source (sensor or door) and alarm kind.
func AlarmID(site, source, kind string) string { return site + ":" + source + ":" + kind }

func (s *State) applyAlarm(site, source, kind string, f alarmFact) []Ref {
	id := AlarmID(site, source, kind)
	a := s.alarms[id]
	if a == nil {
		a = &alarm{ID: id, Site: site, Source: source, Type: kind}
		s.alarms[id] = a
	}
	if !insertSorted(&a.Facts, f, compareAlarmFact) {
		return nil
	}
	s.touchAlarm(a)
	return []Ref{{Kind: RefAlarm, Site: site, ID: id}}
}

// Transitions of an alarm, as its history lists them.
const (
	TransRaised  = "raised" // the source reports it: a new episode, or active again
	TransSource  = "source_cleared"
	TransAcked   = "acked"
	TransCleared = "cleared" // an operator closed the episode
	TransEvent   = "event"   // a momentary raise (a door forced open)
)

// AlarmTransition is one change of an alarm's state.
type AlarmTransition struct {
	At    hlc.Timestamp `cbor:"1,keyasint" json:"-"`
	What  string        `cbor:"2,keyasint" json:"what"`
	Who   string        `cbor:"3,keyasint,omitempty" json:"who,omitempty"`
	Note  string        `cbor:"4,keyasint,omitempty" json:"note,omitempty"`
	Value float64       `cbor:"5,keyasint,omitempty" json:"value,omitempty"`
}

// refold replays the alarm's facts in key order. The source state (active
// or cleared, from the gateway) and the operator's state (acknowledged,
// closed) are kept apart, as on a fire panel:
//   - a raise opens an episode, or makes an open one active again; a
//     source that becomes active again needs acknowledging again;
//   - the source clearing leaves the episode open for an operator;
//   - an acknowledgement marks the open episode, at any time;
//   - an operator's clear closes the episode only once the source has
//     cleared: a clear that comes (in key order) while the source is
//     active does nothing, so a smoke detector still in alarm keeps its
//     alarm whatever order the facts arrive in.
func (a *alarm) refold() {
	a.Building, a.Value, a.Active, a.Acked, a.AckedBy = "", 0, false, false, ""
	a.First, a.Last, a.Cleared = 0, 0, 0
	a.open, a.momentary, a.place, a.ackedAt, a.ackNote, a.closed, a.closedBy, a.trans = false, false, "", 0, "", 0, "", nil
	note := func(f alarmFact, what string) {
		a.trans = append(a.trans, AlarmTransition{At: f.Key.HLC, What: what, Who: f.Who, Note: f.Note, Value: f.Value})
	}
	unack := func() { a.Acked, a.AckedBy, a.ackedAt, a.ackNote = false, "", 0, "" }
	for _, f := range a.Facts {
		a.Last = max(a.Last, f.Key.HLC)
		op := f.Op
		if op == opClear && f.Who != "" {
			op = opClose
		}
		switch op {
		case opRaise:
			if f.Building != "" {
				a.Building = f.Building
			}
			if f.Place != "" {
				a.place = f.Place
			}
			switch {
			case !a.open:
				a.open, a.First, a.closed, a.closedBy = true, f.Key.HLC, 0, ""
				unack()
				a.Active, a.momentary = !f.Momentary, f.Momentary
				a.Value = f.Value
				note(f, map[bool]string{true: TransEvent, false: TransRaised}[f.Momentary])
			case f.Momentary:
				if !a.Active {
					unack() // a second forced opening is a new event to look at
					note(f, TransEvent)
				}
			case !a.Active:
				a.Active, a.momentary, a.Value = true, false, f.Value
				unack()
				note(f, TransRaised)
			default:
				a.Value = f.Value
			}
		case opClear:
			if a.Active {
				a.Active, a.Cleared, a.Value = false, f.Key.HLC, f.Value
				note(f, TransSource)
			}
		case opAck:
			if a.open && !a.Acked {
				a.Acked, a.AckedBy, a.ackedAt, a.ackNote = true, f.Who, f.Key.HLC, f.Note
				note(f, TransAcked)
			}
		case opClose:
			if a.open && !a.Active {
				a.open, a.closed, a.closedBy = false, f.Key.HLC, f.Who
				note(f, TransCleared)
			}
		}
	}
}

// AlarmView is an alarm as the hub serves it and sends it to every kiosk
// of its site.
type AlarmView struct {
	ID       string        `cbor:"1,keyasint" json:"id"`
	Site     string        `cbor:"2,keyasint" json:"site"`
	Building string        `cbor:"3,keyasint,omitempty" json:"building,omitempty"`
	Source   string        `cbor:"4,keyasint" json:"source"` // sensor or door
	Kind     string        `cbor:"5,keyasint" json:"kind"`   // smoke, heat, water, forced, held_open
	Active   bool          `cbor:"6,keyasint" json:"active"` // the source still reports it
	Acked    bool          `cbor:"7,keyasint" json:"acked"`
	AckedBy  string        `cbor:"8,keyasint,omitempty" json:"acked_by,omitempty"`
	First    hlc.Timestamp `cbor:"9,keyasint" json:"first"` // first raise of the current or last episode
	Last     hlc.Timestamp `cbor:"10,keyasint" json:"last"`
	Cleared  hlc.Timestamp `cbor:"11,keyasint,omitempty" json:"cleared,omitempty"` // the source last cleared
	Value    float64       `cbor:"12,keyasint,omitempty" json:"value,omitempty"`
	Place    string        `cbor:"13,keyasint,omitempty" json:"place,omitempty"`
	Severity string        `cbor:"14,keyasint,omitempty" json:"severity"`
	// Open: the episode waits for an operator's clear. Momentary: it was
	// raised by an event (a forced door) rather than a lasting condition.
	Open      bool          `cbor:"15,keyasint,omitempty" json:"open"`
	Momentary bool          `cbor:"16,keyasint,omitempty" json:"momentary,omitempty"`
	AckedAt   hlc.Timestamp `cbor:"17,keyasint,omitempty" json:"acked_hlc,omitempty"`
	AckNote   string        `cbor:"18,keyasint,omitempty" json:"ack_note,omitempty"`
	Closed    hlc.Timestamp `cbor:"19,keyasint,omitempty" json:"closed_hlc,omitempty"`
	ClosedBy  string        `cbor:"20,keyasint,omitempty" json:"cleared_by,omitempty"`
}

func (a *alarm) view() AlarmView {
	return AlarmView{ID: a.ID, Site: a.Site, Building: a.Building, Source: a.Source, Kind: a.Type, Active: a.Active,
		Acked: a.Acked, AckedBy: a.AckedBy, First: a.First, Last: a.Last, Cleared: a.Cleared, Value: a.Value,
		Place: a.place, Severity: severities[a.Type].name, Open: a.open, Momentary: a.momentary,
		AckedAt: a.ackedAt, AckNote: a.ackNote, Closed: a.closed, ClosedBy: a.closedBy}
}

// Alarm returns an alarm by id (see AlarmID), open or not, or ErrNotFound.
func (s *State) Alarm(id string) (AlarmView, error) {
	a := s.alarms[id]
	if a == nil {
		return AlarmView{}, fmt.Errorf("alarm %s: %w", id, ErrNotFound)
	}
	return a.view(), nil
}

// CompareAlarms orders alarms most severe first, then oldest first, then
// by id.
func CompareAlarms(a, b AlarmView) int {
	return cmp.Or(cmp.Compare(SeverityRank(a.Kind), SeverityRank(b.Kind)), cmp.Compare(a.First, b.First), cmp.Compare(a.ID, b.ID))
}

// OpenAlarms lists the alarms of a site ("" for every site) that are open
// (not yet cleared by an operator), most severe first.
func (s *State) OpenAlarms(site string) []AlarmView {
	out := []AlarmView{}
	for _, id := range sortedKeys(s.alarms) {
		if a := s.alarms[id]; a.open && (site == "" || a.Site == site) {
			out = append(out, a.view())
		}
	}
	slices.SortStableFunc(out, CompareAlarms)
	return out
}

// AlarmRecord is an alarm with every transition it went through.
type AlarmRecord struct {
	AlarmView
	Transitions []AlarmTransition
}

// AlarmHistory lists every alarm, open or closed, that match keeps, with
// its transitions, in id order.
func (s *State) AlarmHistory(match func(AlarmView, []AlarmTransition) bool) []AlarmRecord {
	out := []AlarmRecord{}
	for _, id := range sortedKeys(s.alarms) {
		a := s.alarms[id]
		v := a.view()
		if match == nil || match(v, a.trans) {
			out = append(out, AlarmRecord{AlarmView: v, Transitions: slices.Clone(a.trans)})
		}
	}
	return out
}
