package poll

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	errLast, errDied := errors.New("last"), errors.New("died")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		cond  func(n int) (bool, error)
		check func() error
		want  error // nil: success
	}{
		{"met on the third call", context.Background(), func(n int) (bool, error) { return n >= 3, nil }, nil, nil},
		{"never met, no error", context.Background(), func(int) (bool, error) { return false, nil }, nil, ErrNotMet},
		{"never met keeps the last error", context.Background(), func(n int) (bool, error) {
			if n == 1 {
				return false, errLast
			}
			return false, nil
		}, nil, errLast},
		{"check fails first", context.Background(), func(int) (bool, error) { return false, nil }, func() error { return errDied }, errDied},
		{"context ends", canceled, func(int) (bool, error) { return false, nil }, nil, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			err := Until(tc.ctx, 100*time.Millisecond, time.Millisecond, func() (bool, error) { n++; return tc.cond(n) }, tc.check)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Until = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEventuallyReturnsOnceMet(t *testing.T) {
	n := 0
	Eventually(t, 5*time.Second, func() (bool, string) { n++; return n == 3, "not yet" })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

// Settled returns once the value holds still, not before: a value that
// moves at each of its first five reads is read as 5.
func TestSettledWaitsForTheValueToHoldStill(t *testing.T) {
	reads := 0
	f := func() int { reads++; return min(reads, 5) }
	if got := Settled(t, 10*time.Second, 100*time.Millisecond, f); got != 5 {
		t.Fatalf("Settled returned %d, want 5", got)
	}
}
