package hlc

import (
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"
)

type fakeWall struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeWall) now() time.Time  { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeWall) set(t time.Time) { f.mu.Lock(); f.t = t; f.mu.Unlock() }

func TestClockFollowsWallAndNeverGoesBack(t *testing.T) {
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	w := &fakeWall{t: base}
	c := NewClock(w.now, 0)

	steps := []struct {
		name string
		wall time.Time
	}{
		{"start", base},
		{"same millisecond", base},
		{"forward 24h", base.Add(24 * time.Hour)},
		{"back 1h", base.Add(23 * time.Hour)},
		{"back 24h", base.Add(-24 * time.Hour)},
		{"rtc reset to epoch", time.Unix(0, 0)},
		{"forward again", base.Add(48 * time.Hour)},
	}
	var prev Timestamp
	for _, s := range steps {
		w.set(s.wall)
		got := c.Now()
		if got <= prev {
			t.Fatalf("%s: Now() = %v, want > %v", s.name, got, prev)
		}
		prev = got
	}
	if got, want := prev.WallMillis(), base.Add(48*time.Hour).UnixMilli(); got != want {
		t.Errorf("after forward jump wall = %d, want %d", got, want)
	}
}

func TestClockFloorSurvivesRestart(t *testing.T) {
	w := &fakeWall{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewClock(w.now, 0)
	last := c.Now()
	for range 100 {
		last = c.Now()
	}
	// Restart with the wall clock an hour behind: the persisted floor wins.
	w.set(w.now().Add(-time.Hour))
	c2 := NewClock(w.now, last)
	if got := c2.Now(); got <= last {
		t.Fatalf("after restart Now() = %v, want > %v", got, last)
	}
}

func TestLogicalOverflowBorrowsMillisecond(t *testing.T) {
	w := &fakeWall{t: time.UnixMilli(1000)}
	c := NewClock(w.now, New(1000, 1<<16-2))
	a := c.Now()
	b := c.Now()
	if a != New(1000, 1<<16-1) || b != New(1001, 0) {
		t.Fatalf("got %v, %v; want 1000/65535 then 1001/0", a, b)
	}
}

func TestObserve(t *testing.T) {
	w := &fakeWall{t: time.UnixMilli(5000)}
	c := NewClock(w.now, 0)
	remote := New(9000, 7)
	c.Observe(remote)
	if got := c.Now(); got <= remote {
		t.Fatalf("Now() after Observe = %v, want > %v", got, remote)
	}
	if got := c.Observe(New(1, 0)); got <= remote {
		t.Fatalf("Observe of an old stamp moved the clock back to %v", got)
	}
}

func TestMonotonicProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := &fakeWall{t: time.UnixMilli(rapid.Int64Range(0, 1<<40).Draw(t, "start"))}
		c := NewClock(w.now, Timestamp(rapid.Uint64Range(0, 1<<50).Draw(t, "floor")))
		prev := c.Last()
		for i, n := 0, rapid.IntRange(1, 200).Draw(t, "n"); i < n; i++ {
			switch rapid.IntRange(0, 2).Draw(t, "op") {
			case 0:
				w.set(time.UnixMilli(rapid.Int64Range(0, 1<<41).Draw(t, "wall")))
			case 1:
				c.Observe(Timestamp(rapid.Uint64Range(0, 1<<57).Draw(t, "remote")))
			}
			got := c.Now()
			if got <= prev {
				t.Fatalf("step %d: Now() = %v, want > %v", i, got, prev)
			}
			prev = got
		}
	})
}

func TestStringAndParse(t *testing.T) {
	ts := New(time.Date(2026, 11, 25, 8, 30, 0, 0, time.UTC).UnixMilli(), 3)
	if got, want := ts.String(), "2026-11-25T08:30:00.000Z/3"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	back, err := Parse("12345")
	if err != nil || back != 12345 {
		t.Errorf("Parse = %v, %v", back, err)
	}
	if _, err := Parse("x"); err == nil {
		t.Error("Parse(\"x\") succeeded, want error")
	}
}
