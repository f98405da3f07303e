package relay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"linli/firmware/relay"
	"linli/shared/test/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// timers is an After that the test fires by hand, in any order.
type timers struct {
	mu sync.Mutex
	ch []chan time.Time
}

func (f *timers) After(time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	f.ch = append(f.ch, c)
	return c
}

// fire ends the i-th pulse once it has started waiting.
func (f *timers) fire(t *testing.T, i int) {
	t.Helper()
	f.waitCreated(t, i)
	f.mu.Lock()
	f.ch[i] <- time.Time{}
	f.mu.Unlock()
}

func level(p *gpiotest.Pin) gpio.Level {
	p.Lock()
	defer p.Unlock()
	return p.L
}

func newRelay(t *testing.T, activeLow bool) (*relay.Relay, *gpiotest.Pin, *timers) {
	t.Helper()
	pin := &gpiotest.Pin{N: "strike", L: gpio.Low}
	tm := &timers{}
	r, err := relay.New(pin, relay.Config{Name: "B3-main-strike", ActiveLow: activeLow, After: tm.After})
	if err != nil {
		t.Fatal(err)
	}
	return r, pin, tm
}

func TestLevels(t *testing.T) {
	tests := []struct {
		activeLow bool
		off, on   gpio.Level
	}{
		{false, gpio.Low, gpio.High},
		{true, gpio.High, gpio.Low},
	}
	for _, tt := range tests {
		r, pin, _ := newRelay(t, tt.activeLow)
		if got := level(pin); got != tt.off || r.On() {
			t.Errorf("activeLow %v: after New level %v on %v, want %v off", tt.activeLow, got, r.On(), tt.off)
		}
		if err := r.Hold(true); err != nil {
			t.Fatal(err)
		}
		if got := level(pin); got != tt.on || !r.On() {
			t.Errorf("activeLow %v: held level %v, want %v", tt.activeLow, got, tt.on)
		}
		if err := r.Hold(false); err != nil {
			t.Fatal(err)
		}
		if got := level(pin); got != tt.off {
			t.Errorf("activeLow %v: released level %v, want %v", tt.activeLow, got, tt.off)
		}
	}
}

// waitCreated waits until the i-th pulse has asked for its timer, i.e. it is running.
func (f *timers) waitCreated(t *testing.T, i int) {
	t.Helper()
	poll.WaitForWithin(t, 5*time.Second, fmt.Sprintf("pulse %d to start", i), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.ch) > i
	})
}

func recv(t *testing.T, errs <-chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Pulse did not return within 5s")
	}
	return nil
}

// TestOverlappingPulses: a second pulse keeps the strike released after the first ends,
// whichever ends first.
func TestOverlappingPulses(t *testing.T) {
	for _, order := range [][2]int{{0, 1}, {1, 0}} {
		r, pin, tm := newRelay(t, false)
		ctx := context.Background()
		errs := [2]chan error{make(chan error, 1), make(chan error, 1)}
		for i := range 2 {
			go func() { errs[i] <- r.Pulse(ctx, time.Duration(i+1)*time.Second) }()
			tm.waitCreated(t, i)
			if !r.On() || level(pin) != gpio.High {
				t.Fatalf("pulse %d running: relay off", i)
			}
		}
		tm.fire(t, order[0])
		if err := recv(t, errs[order[0]]); err != nil {
			t.Fatal(err)
		}
		if !r.On() || level(pin) != gpio.High {
			t.Fatalf("order %v: relay off while pulse %d still runs", order, order[1])
		}
		tm.fire(t, order[1])
		if err := recv(t, errs[order[1]]); err != nil {
			t.Fatal(err)
		}
		if r.On() || level(pin) != gpio.Low {
			t.Fatalf("order %v: relay on after both pulses", order)
		}
	}
}

func TestHoldOutlastsPulse(t *testing.T) {
	r, pin, tm := newRelay(t, false)
	if err := r.Hold(true); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() { errs <- r.Pulse(context.Background(), time.Second) }()
	tm.fire(t, 0)
	if err := recv(t, errs); err != nil {
		t.Fatal(err)
	}
	if !r.On() || level(pin) != gpio.High {
		t.Fatal("relay off after a pulse ended during a hold")
	}
	if err := r.Hold(false); err != nil {
		t.Fatal(err)
	}
	if r.On() || level(pin) != gpio.Low {
		t.Fatal("relay on after the hold ended")
	}
}

func TestPulseCancelled(t *testing.T) {
	r, pin, tm := newRelay(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { errs <- r.Pulse(ctx, time.Hour) }()
	tm.waitCreated(t, 0)
	cancel()
	if err := recv(t, errs); !errors.Is(err, context.Canceled) {
		t.Fatalf("Pulse = %v, want context.Canceled", err)
	}
	if r.On() || level(pin) != gpio.High {
		t.Fatal("active-low relay not back off (High) after a cancelled pulse")
	}
}

func TestErrors(t *testing.T) {
	r, _, _ := newRelay(t, false)
	for _, d := range []time.Duration{0, -time.Second} {
		if err := r.Pulse(context.Background(), d); !errors.Is(err, relay.ErrDuration) {
			t.Errorf("Pulse(%v) = %v, want ErrDuration", d, err)
		}
	}
	if _, err := relay.New(nil, relay.Config{Name: "x"}); !errors.Is(err, relay.ErrConfig) {
		t.Errorf("New(nil) = %v, want ErrConfig", err)
	}
	if _, err := relay.New(&gpiotest.Pin{}, relay.Config{}); !errors.Is(err, relay.ErrConfig) {
		t.Errorf("New without name = %v, want ErrConfig", err)
	}
}

// TestDefaultTimer runs a real 1 ms pulse through time.After.
func TestDefaultTimer(t *testing.T) {
	pin := &gpiotest.Pin{N: "strike"}
	r, err := relay.New(pin, relay.Config{Name: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Pulse(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if r.On() {
		t.Error("relay on after the pulse")
	}
}
