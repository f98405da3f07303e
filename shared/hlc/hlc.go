// Package hlc implements a hybrid logical clock: timestamps that follow wall
// time when it is sane and never run backwards when it is not.
package hlc

import (
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Timestamp packs milliseconds since the Unix epoch in its high 48 bits and
// a logical counter in its low 16 bits, so plain integer comparison orders
// timestamps and one uint64 travels cheaply in CBOR.
type Timestamp uint64

const logicalBits = 16

// New builds a Timestamp from its parts.
func New(wallMillis int64, logical uint16) Timestamp {
	if wallMillis < 0 {
		wallMillis = 0
	}
	return Timestamp(uint64(wallMillis)<<logicalBits | uint64(logical))
}

// FromTime is the timestamp of t with a zero logical counter.
func FromTime(t time.Time) Timestamp { return New(t.UnixMilli(), 0) }

// WallMillis is the physical part in milliseconds since the Unix epoch.
func (t Timestamp) WallMillis() int64 { return int64(uint64(t) >> logicalBits) }

// Logical is the counter that orders events within one millisecond.
func (t Timestamp) Logical() uint16 { return uint16(t) }

// Time is the physical part as a time.Time in UTC.
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.WallMillis()).UTC() }

// String renders the timestamp as RFC 3339 time plus the logical counter.
func (t Timestamp) String() string {
	return t.Time().Format("2006-01-02T15:04:05.000Z07:00") + "/" + strconv.Itoa(int(t.Logical()))
}

// Clock issues monotonic hybrid timestamps. It is safe for concurrent use.
type Clock struct {
	mu   sync.Mutex
	now  func() time.Time
	last Timestamp
}

// NewClock returns a clock reading wall time from now (time.Now when nil)
// that never issues a timestamp at or below floor. Callers persist the last
// timestamp they used and pass it back as floor after a restart, so the clock
// survives reboots and a real-time clock that was reset to 1970.
func NewClock(now func() time.Time, floor Timestamp) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now, last: floor}
}

// Now issues a timestamp for a local event: greater than every timestamp
// this clock has issued or observed.
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = next(c.last, FromTime(c.now()))
	return c.last
}

// Observe merges a timestamp received from another node, so that later local
// events order after it, and returns the clock's new position.
func (c *Clock) Observe(remote Timestamp) Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote > c.last {
		c.last = remote
	}
	return c.last
}

// Last is the greatest timestamp issued or observed so far.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// next is the HLC send rule: take the wall clock when it is ahead, otherwise
// tick the logical counter; on counter overflow borrow the next millisecond.
func next(last, wall Timestamp) Timestamp {
	if wall.WallMillis() > last.WallMillis() {
		return wall
	}
	if last.Logical() == 1<<logicalBits-1 {
		return New(last.WallMillis()+1, 0)
	}
	return last + 1
}

// Skew reports how far remote's wall part is from the local wall clock; the
// hub uses it to flag devices whose clocks are implausibly off.
func Skew(remote Timestamp, localNow time.Time) time.Duration {
	return time.Duration(remote.WallMillis()-localNow.UnixMilli()) * time.Millisecond
}

// Parse reads the decimal form of a timestamp (as stored in text config).
func Parse(s string) (Timestamp, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse hlc timestamp %q: %w", s, err)
	}
	return Timestamp(v), nil
}
