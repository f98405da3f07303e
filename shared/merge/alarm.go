package merge

import (
	"fmt"

	"linli/shared/hlc"
)

// Operations on an alarm.
const (
	opRaise uint8 = 1
	opClear uint8 = 2
	opAck   uint8 = 3
)

// alarm keeps every raise, clear and acknowledgement of one alarm, so its
// state can be refolded in key order whatever order they arrived in.
type alarm struct {
	dirty bool // waits for refold at the end of a batch

	ID     string      `cbor:"1,keyasint"`
	Site   string      `cbor:"2,keyasint"`
	Source string      `cbor:"3,keyasint"`
	Type   string      `cbor:"4,keyasint"`
	Facts  []alarmFact `cbor:"5,keyasint"` // sorted by key

	// Derived by refold.
	Building string        `cbor:"6,keyasint,omitempty"`
	Value    float64       `cbor:"7,keyasint,omitempty"`
	Active   bool          `cbor:"8,keyasint,omitempty"`
	Acked    bool          `cbor:"9,keyasint,omitempty"`
	AckedBy  string        `cbor:"10,keyasint,omitempty"`
	First    hlc.Timestamp `cbor:"11,keyasint,omitempty"` // first raise of the current (or last) episode
	Last     hlc.Timestamp `cbor:"12,keyasint,omitempty"` // latest fact
	Cleared  hlc.Timestamp `cbor:"13,keyasint,omitempty"` // when the last episode was cleared
}

type alarmFact struct {
	Key      key     `cbor:"1,keyasint"`
	Op       uint8   `cbor:"2,keyasint"`
	Building string  `cbor:"3,keyasint,omitempty"`
	Value    float64 `cbor:"4,keyasint,omitempty"`
	Who      string  `cbor:"5,keyasint,omitempty"`
	Note     string  `cbor:"6,keyasint,omitempty"`
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

// refold replays the alarm's facts in key order: a raise opens an episode
// (or refreshes an open one), a clear closes it, an acknowledgement marks
// the open episode. Acknowledging or clearing a closed alarm does nothing.
func (a *alarm) refold() {
	a.Building, a.Value, a.Active, a.Acked, a.AckedBy = "", 0, false, false, ""
	a.First, a.Last, a.Cleared = 0, 0, 0
	for _, f := range a.Facts {
		a.Last = max(a.Last, f.Key.HLC)
		switch f.Op {
		case opRaise:
			if !a.Active {
				a.Active, a.Acked, a.AckedBy, a.First = true, false, "", f.Key.HLC
			}
			if f.Building != "" {
				a.Building = f.Building
			}
			a.Value = f.Value
		case opClear:
			if a.Active {
				a.Active, a.Cleared = false, f.Key.HLC
			}
		case opAck:
			if a.Active {
				a.Acked, a.AckedBy = true, f.Who
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
	Kind     string        `cbor:"5,keyasint" json:"kind"`   // smoke, heat, water, forced
	Active   bool          `cbor:"6,keyasint" json:"active"`
	Acked    bool          `cbor:"7,keyasint" json:"acked"`
	AckedBy  string        `cbor:"8,keyasint,omitempty" json:"acked_by,omitempty"`
	First    hlc.Timestamp `cbor:"9,keyasint" json:"first"` // first raise of the current or last episode
	Last     hlc.Timestamp `cbor:"10,keyasint" json:"last"`
	Cleared  hlc.Timestamp `cbor:"11,keyasint,omitempty" json:"cleared,omitempty"`
	Value    float64       `cbor:"12,keyasint,omitempty" json:"value,omitempty"`
}

func (a *alarm) view() AlarmView {
	return AlarmView{ID: a.ID, Site: a.Site, Building: a.Building, Source: a.Source, Kind: a.Type, Active: a.Active,
		Acked: a.Acked, AckedBy: a.AckedBy, First: a.First, Last: a.Last, Cleared: a.Cleared, Value: a.Value}
}

// Alarm returns an alarm by id (see AlarmID), open or not, or ErrNotFound.
func (s *State) Alarm(id string) (AlarmView, error) {
	a := s.alarms[id]
	if a == nil {
		return AlarmView{}, fmt.Errorf("alarm %s: %w", id, ErrNotFound)
	}
	return a.view(), nil
}

// OpenAlarms lists the active alarms of a site ("" for every site) by id.
func (s *State) OpenAlarms(site string) []AlarmView {
	out := []AlarmView{}
	for _, id := range sortedKeys(s.alarms) {
		if a := s.alarms[id]; a.Active && (site == "" || a.Site == site) {
			out = append(out, a.view())
		}
	}
	return out
}
