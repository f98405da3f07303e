package backoff

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		name string
		r    float64
		want []time.Duration
	}{
		{"no jitter high", 0.999999999, []time.Duration{100, 200, 400, 800, 1000, 1000}},
		{"no jitter low", 0, []time.Duration{50, 100, 200, 400, 500, 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, Rand: func() float64 { return tt.r }}
			for i, w := range tt.want {
				got := b.Next().Round(time.Millisecond)
				if got != w*time.Millisecond {
					t.Fatalf("attempt %d: Next() = %v, want %v", i, got, w*time.Millisecond)
				}
			}
			b.Reset()
			if got := b.Next().Round(time.Millisecond); got != tt.want[0]*time.Millisecond {
				t.Fatalf("after Reset Next() = %v", got)
			}
		})
	}
}

func TestBackoffBoundsWithRealRandom(t *testing.T) {
	b := Backoff{Min: time.Millisecond, Max: 64 * time.Millisecond}
	for i := range 1000 {
		if d := b.Next(); d < 500*time.Microsecond || d > 64*time.Millisecond {
			t.Fatalf("attempt %d: %v outside [0.5ms, 64ms]", i, d)
		}
	}
}
