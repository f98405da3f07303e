package diskguard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"linli/edge/outbox"
	"linli/shared/event"
	"linli/shared/test/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Size
		wantErr bool
	}{
		{"64MiB", Size{Bytes: 64 << 20}, false},
		{"1GB", Size{Bytes: 1e9}, false},
		{"512KiB", Size{Bytes: 512 << 10}, false},
		{"1.5GiB", Size{Bytes: 3 << 29}, false},
		{"1000", Size{Bytes: 1000}, false},
		{" 5% ", Size{Percent: 5}, false},
		{"0.5%", Size{Percent: 0.5}, false},
		{"0", Size{}, false},
		{"", Size{}, true},
		{"100%", Size{}, true},
		{"-1MiB", Size{}, true},
		{"lots", Size{}, true},
		{"12XB", Size{}, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseSize(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if got := (Size{Percent: 10}).Of(1000); got != 100 {
		t.Errorf("10%% of 1000 = %d", got)
	}
}

// disk is a fake statfs.
type disk struct {
	mu          sync.Mutex
	free, total uint64
	calls       int
}

func (d *disk) statfs(string) (uint64, uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	return d.free, d.total, nil
}

func (d *disk) set(free uint64) { d.mu.Lock(); d.free = free; d.mu.Unlock() }

func newGuard(t *testing.T, d *disk) *Guard {
	t.Helper()
	g, err := New(Options{Dir: "/data", Reserve: Size{Bytes: 100 << 20}, TelemetryReserve: Size{Bytes: 200 << 20},
		Interval: 10 * time.Millisecond, DropBatch: 7, Statfs: d.statfs})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestAdmit(t *testing.T) {
	d := &disk{free: 1 << 30, total: 2 << 30}
	g := newGuard(t, d)
	kinds := []event.Kind{event.KindCheckin, event.KindReport, event.KindVote, event.KindRating,
		event.KindAccess, event.KindReading, event.KindAlarm}
	for _, tc := range []struct {
		name   string
		free   uint64
		refuse bool
	}{
		{"plenty", 1 << 30, false},
		{"below telemetry reserve", 150 << 20, false},
		{"below reserve", 99 << 20, true},
		{"none", 0, true},
	} {
		d.set(tc.free)
		time.Sleep(15 * time.Millisecond) // let the cached reading age past Interval
		for _, k := range kinds {
			err := g.Admit(k, 100)
			if refused := errors.Is(err, ErrDiskReserve); refused != tc.refuse {
				t.Errorf("%s: Admit(%s) = %v, want refused %v", tc.name, k, err, tc.refuse)
			}
		}
		if err := g.Admit(event.KindGap, 100); err != nil {
			t.Errorf("%s: a gap event was refused: %v", tc.name, err)
		}
	}
	if st := g.Stats(); st.Refused != 2*uint64(len(kinds)) {
		t.Errorf("refused = %d, want %d", st.Refused, 2*len(kinds))
	}
}

// The cached reading must not let a burst of writes run past the reserve
// between two statfs calls.
func TestAdmitCountsWhatItLetThrough(t *testing.T) {
	d := &disk{free: 300 << 20, total: 1 << 30}
	g, err := New(Options{Dir: "/data", Reserve: Size{Bytes: 100 << 20}, TelemetryReserve: Size{Bytes: 100 << 20},
		Interval: time.Hour, Statfs: d.statfs})
	if err != nil {
		t.Fatal(err)
	}
	before := d.calls
	for range 1000 {
		if err := g.Admit(event.KindCheckin, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if d.calls-before > 2 {
		t.Errorf("%d statfs calls for 1000 admits far from the reserve, want the cached reading used", d.calls-before)
	}
	// Someone else fills the disk: the cached reading still says 300 MiB.
	// Our own admitted bytes bring the estimate near the reserve, and
	// there the guard reads again and refuses, before its own writes
	// could have run past the reserve.
	d.set(99 << 20)
	passed := 0
	for ; passed < 1_000_000; passed++ {
		if err := g.Admit(event.KindCheckin, 1000); err != nil {
			if !errors.Is(err, ErrDiskReserve) {
				t.Fatal(err)
			}
			break
		}
	}
	if spent := uint64(1000+passed) * amplification(1000); spent > (300-100)<<20 {
		t.Errorf("the guard let %d bytes (amplified) through before refusing; only 200 MiB were above the reserve", spent)
	}
}

func TestReserveLargerThanDisk(t *testing.T) {
	d := &disk{free: 10 << 20, total: 32 << 20}
	_, err := New(Options{Dir: "/data", Reserve: Size{Bytes: 64 << 20}, Statfs: d.statfs})
	if !errors.Is(err, ErrReserveTooLarge) {
		t.Fatalf("New with a 64MiB reserve on a 32MiB disk: %v", err)
	}
	if _, err := New(Options{Dir: "/data", Reserve: Size{Percent: 5}, Statfs: d.statfs}); err != nil {
		t.Fatalf("5%% reserve: %v", err)
	}
}

type shedder struct {
	mu       sync.Mutex
	reclaims int
	drops    []int
	left     int // readings left to drop
}

func (s *shedder) ReclaimAcked(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reclaims++
	return 0, nil
}

func (s *shedder) DropTelemetry(_ context.Context, limit int, _ string) (event.Event, *event.Gap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left == 0 {
		return event.Event{}, nil, outbox.ErrNothingToDrop
	}
	n := min(limit, s.left)
	s.left -= n
	s.drops = append(s.drops, n)
	return event.Event{}, &event.Gap{Dropped: uint64(n), FirstSeq: 1, LastSeq: uint64(n), Reason: "test"}, nil
}

func (s *shedder) dropped() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, d := range s.drops {
		n += d
	}
	return n, s.reclaims
}

func TestRunShedsOnlyBelowTelemetryReserve(t *testing.T) {
	d := &disk{free: 1 << 30, total: 2 << 30}
	g := newGuard(t, d)
	s := &shedder{left: 20}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, s) }()
	time.Sleep(50 * time.Millisecond)
	if n, r := s.dropped(); n != 0 || r != 0 {
		t.Fatalf("with plenty of space: dropped %d, reclaimed %d times", n, r)
	}
	d.set(150 << 20)
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		n, r := s.dropped()
		return n == 20 && r >= 3, fmt.Sprintf("below the telemetry reserve: dropped %d of 20, reclaimed %d times", n, r)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drops[0] != 7 {
		t.Errorf("first round dropped %d, want DropBatch 7", s.drops[0])
	}
	if st := g.Stats(); st.Dropped != 20 || st.Gaps != 3 {
		t.Errorf("stats %+v, want 20 dropped in 3 gaps", st)
	}
}
