package gateway

import (
	"time"

	"linli/firmware/door"
	"linli/shared/event"
)

// maxGrants bounds the granted swipes a door remembers; older ones have
// long left their unlock window.
const maxGrants = 16

// span is a time the strike was held released; a zero to is still going.
type span struct{ from, to time.Time }

// Door follows one door: whether it is open, when its strike was released
// (by a granted card for the unlock time, or held for a fire alarm), and
// whether each opening was legitimate. An opening while the strike was
// locked is forced, an alarm.
//
// Signals come from different drivers and may reach the gateway slightly
// out of order (a card read is complete only after its frame gap, while the
// door contact reports at once), so an opening with no release found yet
// is held back for a grace period, in the signals' own time, before it is
// called forced; a grant or hold covering its time that arrives meanwhile
// makes it a normal opening.
type Door struct {
	name, building string
	place          string // where it is, carried by its alarms
	unlock, grace  time.Duration

	open       bool
	grants     []time.Time // granted swipes, oldest first
	holds      []span
	pending    time.Time // an opening not yet explained
	hasPending bool
}

// NewDoor returns the rules of a door whose strike a granted card releases
// for unlock; grace is how long an unexplained opening waits.
func NewDoor(name, building string, unlock, grace time.Duration) *Door {
	return &Door{name: name, building: building, unlock: unlock, grace: grace}
}

// Open reports whether the door was last seen open.
func (d *Door) Open() bool { return d.open }

// Released reports whether the strike was released at t.
func (d *Door) Released(t time.Time) bool {
	for _, g := range d.grants {
		if !t.Before(g) && !t.After(g.Add(d.unlock)) {
			return true
		}
	}
	for _, h := range d.holds {
		if !t.Before(h.from) && (h.to.IsZero() || !t.After(h.to)) {
			return true
		}
	}
	return false
}

// Holding reports whether the strike is held released now (a fire alarm).
func (d *Door) Holding() bool {
	return len(d.holds) > 0 && d.holds[len(d.holds)-1].to.IsZero()
}

func (d *Door) access(result string) Record {
	a := &event.Access{Door: d.name, Result: result, Building: d.building}
	if result == "forced" || result == "held_open" {
		a.Place = d.place // an alarm: people must know which door
	}
	return Record{Body: a, Priority: result == "forced"}
}

// Grant records a granted card at at: the strike is released until
// at+unlock. An opening waiting for an explanation that this covers is an
// ordinary opening.
func (d *Door) Grant(at time.Time) []Record {
	d.grants = append(d.grants, at)
	if len(d.grants) > maxGrants {
		d.grants = d.grants[len(d.grants)-maxGrants:]
	}
	return d.explain()
}

// Hold starts (on) or ends the release of the strike at at, for a fire
// alarm on an escape route.
func (d *Door) Hold(on bool, at time.Time) []Record {
	switch {
	case on && !d.Holding():
		d.holds = append(d.holds, span{from: at})
		if len(d.holds) > maxGrants {
			d.holds = d.holds[len(d.holds)-maxGrants:]
		}
	case !on && d.Holding():
		d.holds[len(d.holds)-1].to = at
	}
	return d.explain()
}

// explain turns a pending opening into an ordinary one if a release now
// covers it.
func (d *Door) explain() []Record {
	if d.hasPending && d.Released(d.pending) {
		d.hasPending = false
		return []Record{d.access("open")}
	}
	return nil
}

// Event applies a door contact event and returns what to record.
func (d *Door) Event(e door.Event) []Record {
	var out []Record
	switch e.Kind {
	case door.Open:
		out = d.resolve(out) // a bounce-free reopening: the earlier one is decided first
		d.open = true
		if d.Released(e.At) {
			return append(out, d.access("open"))
		}
		d.pending, d.hasPending = e.At, true
	case door.Close:
		// Closed before the grace ran out: decide the opening now, with
		// what has arrived so far.
		out = d.resolve(out)
		d.open = false
		out = append(out, d.access("close"))
	case door.HeldOpen:
		out = append(d.resolve(out), d.access("held_open"))
	}
	return out
}

// resolve decides a pending opening: open if a release covers it by now,
// else forced.
func (d *Door) resolve(out []Record) []Record {
	if !d.hasPending {
		return out
	}
	d.hasPending = false
	if d.Released(d.pending) {
		return append(out, d.access("open"))
	}
	return append(out, d.access("forced"))
}

// Tick decides a pending opening whose grace has run out by now.
func (d *Door) Tick(now time.Time) []Record {
	if d.hasPending && !now.Before(d.pending.Add(d.grace)) {
		return d.resolve(nil)
	}
	return nil
}

// Deadline is when Tick must next run, if an opening is pending.
func (d *Door) Deadline() (time.Time, bool) {
	if !d.hasPending {
		return time.Time{}, false
	}
	return d.pending.Add(d.grace), true
}
