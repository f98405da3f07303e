// Package debounce filters noisy binary inputs (contacts, reed switches) and runs the GPIO loop that feeds them.
package debounce

import "time"

// Change is a debounced transition of an input.
type Change struct {
	// Active is the level the input settled on.
	Active bool
	// At is when the input first took that level, at the start of the run that passed the
	// filter, so timestamps do not carry the debounce delay.
	At time.Time
}

// Debouncer accepts a new level only once the raw input has held it for Delay.
//
// It is a pure state machine: the caller feeds it samples with their times, so it is
// tested without real time. The zero value is inactive with no delay.
type Debouncer struct {
	delay   time.Duration
	active  bool      // accepted level
	pending bool      // the raw input differs from active since `since`
	since   time.Time // start of the pending run
}

// New returns a Debouncer whose accepted level starts at active.
func New(active bool, delay time.Duration) Debouncer {
	return Debouncer{active: active, delay: delay}
}

// Active returns the accepted (debounced) level.
func (d *Debouncer) Active() bool { return d.active }

// Pending reports whether the raw input currently differs from the accepted level, and
// since when.
func (d *Debouncer) Pending() (since time.Time, ok bool) { return d.since, d.pending }

// Deadline returns when the pending level will be accepted if the input holds it; ok is
// false when nothing is pending.
func (d *Debouncer) Deadline() (time.Time, bool) {
	if !d.pending {
		return time.Time{}, false
	}
	return d.since.Add(d.delay), true
}

// Update records that the raw input was active at now and appends the accepted changes to
// dst. Samples must come in time order.
//
// A pending level that has held until now is accepted before the new sample is looked at:
// a sample shows what the input is at now, and a late sample (the reader was busy) must not
// erase a level that had already held long enough. So one call can append two changes
// when the delay is zero or samples are sparse.
func (d *Debouncer) Update(dst []Change, active bool, now time.Time) []Change {
	dst = d.accept(dst, now)
	switch {
	case active == d.active:
		d.pending = false // a bounce: back to the accepted level before the delay passed
	case !d.pending:
		d.pending, d.since = true, now
	}
	return d.accept(dst, now)
}

func (d *Debouncer) accept(dst []Change, now time.Time) []Change {
	if !d.pending || now.Before(d.since.Add(d.delay)) {
		return dst
	}
	d.active, d.pending = !d.active, false
	return append(dst, Change{Active: d.active, At: d.since})
}
