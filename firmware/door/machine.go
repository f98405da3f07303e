package door

import (
	"time"

	"linli/firmware/internal/debounce"
)

// Machine turns raw door-contact samples into door events. It is pure: it is fed the
// contact's level with the time it was seen, so debouncing and held-open timing are
// tested without real time.
type Machine struct {
	deb      debounce.Debouncer
	heldOpen time.Duration
	open     bool      // the debounced state as of the change being handled
	openedAt time.Time // start of the current opening
	heldSent bool      // HeldOpen already emitted for the current opening
	changes  []debounce.Change
}

// NewMachine returns a Machine for a door seen open (or closed) at now. It emits nothing
// for that first state, but a door already open at now is timed for HeldOpen from now.
// heldOpen 0 disables HeldOpen.
func NewMachine(open bool, now time.Time, debounceDelay, heldOpen time.Duration) *Machine {
	return &Machine{
		deb:      debounce.New(open, debounceDelay),
		heldOpen: heldOpen,
		open:     open,
		openedAt: now,
	}
}

// Open reports the debounced state.
func (m *Machine) Open() bool { return m.deb.Active() }

// Step feeds the contact state seen at now (samples in time order) and appends the
// events it causes to dst.
func (m *Machine) Step(dst []Event, open bool, now time.Time) []Event {
	m.changes = m.deb.Update(m.changes[:0], open, now)
	for _, c := range m.changes {
		// An opening that lasted past the limit is held open even if it is
		// over by now. This looks at the state before c: the debouncer
		// already holds the state after it, and a door that was shut has no
		// opening to time (the last one may have ended long ago).
		dst = m.held(dst, c.At)
		m.open = c.Active
		if c.Active {
			m.openedAt, m.heldSent = c.At, false
			dst = append(dst, Event{Kind: Open, At: c.At})
		} else {
			dst = append(dst, Event{Kind: Close, At: c.At})
		}
	}
	return m.held(dst, now)
}

// held appends HeldOpen if the door has stayed open past the limit as of t.
func (m *Machine) held(dst []Event, t time.Time) []Event {
	deadline, ok := m.heldDeadline()
	if !ok || t.Before(deadline) {
		return dst
	}
	m.heldSent = true
	return append(dst, Event{Kind: HeldOpen, At: deadline})
}

// heldDeadline is when the current opening becomes held open, if it can. While the
// contact reads closed since before that time, the debouncer has yet to decide whether
// it was a bounce; until then there is no held-open deadline, only the debounce one.
func (m *Machine) heldDeadline() (time.Time, bool) {
	if !m.open || m.heldSent || m.heldOpen <= 0 {
		return time.Time{}, false
	}
	deadline := m.openedAt.Add(m.heldOpen)
	if since, pending := m.deb.Pending(); pending && !since.After(deadline) {
		return time.Time{}, false
	}
	return deadline, true
}

// Deadline returns when Step must next be called even if the contact does not change:
// when a pending level passes the debounce delay, or when the door becomes held open.
func (m *Machine) Deadline() (time.Time, bool) {
	next, ok := m.deb.Deadline()
	if held, hok := m.heldDeadline(); hok && (!ok || held.Before(next)) {
		next, ok = held, true
	}
	return next, ok
}
