// Package backoff computes capped, jittered retry delays.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff doubles its delay from Min up to Max and jitters each delay
// between half and all of it, so that a building's edges, cut off together,
// do not all reconnect in the same instant. The zero value is not usable;
// set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	// Rand returns a number in [0, 1); nil means math/rand/v2. Tests inject
	// a fixed source.
	Rand    func() float64
	attempt int
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	d := b.Min
	for i := 0; i < b.attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	b.attempt++
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	half := d / 2
	return half + time.Duration(r()*float64(d-half))
}

// Reset starts again from Min after a success.
func (b *Backoff) Reset() { b.attempt = 0 }
