package sim

import (
	"sync"
	"time"
)

// clock is the simulation's time. It runs at speed between actions but never past the
// next action's time, and stands still while an action runs. So every edge of an action
// carries that action's time, whatever the scheduler does: a driver fed this clock sees
// the scenario's timing exactly (a card's bits all at once, a door held open for exactly
// the scripted time), and its results are the same on every run.
type clock struct {
	mu      sync.Mutex
	epoch   time.Time     // simulated time 0
	speed   float64       // simulated per real
	at      time.Duration // simulated time at anchor
	anchor  time.Time     // real time when the clock was last started; zero: stopped
	limit   time.Duration // the clock does not pass this while running; <0: no limit
	realNow func() time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch.Add(c.elapsed())
}

// elapsed is the simulated time now; c.mu is held.
func (c *clock) elapsed() time.Duration {
	d := c.at
	if !c.anchor.IsZero() {
		d += time.Duration(float64(c.realNow().Sub(c.anchor)) * c.speed)
		if c.limit >= 0 && d > c.limit {
			d = c.limit
		}
	}
	return d
}

// stop holds the clock at simulated time at (never earlier than it reads).
func (c *clock) stop(at time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.anchor = max(at, c.elapsed()), time.Time{}
}

// start lets the clock run up to limit (<0: without limit) and returns how long in real
// time it takes to get there.
func (c *clock) start(limit time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.elapsed()
	c.anchor, c.limit = c.realNow(), limit
	if limit < 0 {
		return 0
	}
	return time.Duration(float64(max(limit-c.at, 0)) / c.speed)
}
