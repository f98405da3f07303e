// Package clocktest is a hand-set clock for driver tests: time moves only when the test says.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a manual clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Epoch is where New clocks start: a fixed instant so test output is stable.
var Epoch = time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)

// New returns a Clock reading Epoch.
func New() *Clock { return &Clock{now: Epoch} }

// Now returns the clock's time; pass it as a driver's Now.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock forward by d and returns the new time.
func (c *Clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}
