package door_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"periph.io/x/conn/v3/gpio"

	"linli/firmware/door"
	"linli/firmware/gpiosim"
	"linli/firmware/internal/clocktest"
	"linli/shared/test/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs a sensor on a simulated closed door and stops it when the test ends.
func start(t *testing.T, cfg door.Config) (*gpiosim.Pin, <-chan door.Event) {
	t.Helper()
	pin := gpiosim.New("contact", gpio.Low)
	s, err := door.New(pin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan door.Event, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Run(ctx, events); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	poll.WaitForWithin(t, 5*time.Second, "the pin to listen", pin.Listening)
	return pin, events
}

func next(t *testing.T, events <-chan door.Event) door.Event {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	panic("unreachable")
}

func TestSensor(t *testing.T) {
	clock := clocktest.New()
	cfg := door.DefaultConfig("B3-main")
	cfg.Debounce, cfg.HeldOpen, cfg.Now = time.Second, time.Minute, clock.Now
	pin, events := start(t, cfg)
	ctx := context.Background()

	opened := clock.Now()
	if err := pin.Drive(ctx, gpio.High); err != nil {
		t.Fatal(err)
	}
	// A bounce shorter than the debounce delay is no event.
	clock.Add(100 * time.Millisecond)
	if err := pin.Drive(ctx, gpio.Low); err != nil {
		t.Fatal(err)
	}
	clock.Add(100 * time.Millisecond)
	if err := pin.Drive(ctx, gpio.High); err != nil {
		t.Fatal(err)
	}
	bounced := clock.Now()
	clock.Add(time.Second) // the driver wakes for the debounce deadline on its own
	if got, want := next(t, events), (door.Event{Door: "B3-main", Kind: door.Open, At: bounced}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	clock.Add(time.Minute)
	if got, want := next(t, events), (door.Event{Door: "B3-main", Kind: door.HeldOpen, At: bounced.Add(time.Minute)}); got != want {
		t.Fatalf("got %+v, want %+v (opened %v)", got, want, opened)
	}
	closed := clock.Now()
	if err := pin.Drive(ctx, gpio.Low); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Second)
	if got, want := next(t, events), (door.Event{Door: "B3-main", Kind: door.Close, At: closed}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestSensorActiveLow(t *testing.T) {
	clock := clocktest.New()
	cfg := door.DefaultConfig("B3-side")
	cfg.OpenLevel, cfg.Debounce, cfg.Now = gpio.Low, 0, clock.Now
	pin := gpiosim.New("contact", gpio.High) // closed, for an active-low contact
	s, err := door.New(pin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan door.Event, 4)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, events) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	poll.WaitForWithin(t, 5*time.Second, "the pin to listen", pin.Listening)
	if err := pin.Drive(ctx, gpio.Low); err != nil {
		t.Fatal(err)
	}
	if got := next(t, events); got.Kind != door.Open {
		t.Fatalf("got %+v, want open", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*door.Config)
	}{
		{"empty name", func(c *door.Config) { c.Name = "" }},
		{"negative debounce", func(c *door.Config) { c.Debounce = -1 }},
		{"negative held open", func(c *door.Config) { c.HeldOpen = -1 }},
		{"unknown pull", func(c *door.Config) { c.Pull = 9 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := door.DefaultConfig("d")
			tt.mutate(&cfg)
			if _, err := door.New(gpiosim.New("p", gpio.Low), cfg); !errors.Is(err, door.ErrConfig) {
				t.Errorf("New: %v, want ErrConfig", err)
			}
		})
	}
	if _, err := door.New(nil, door.DefaultConfig("d")); !errors.Is(err, door.ErrConfig) {
		t.Errorf("New(nil pin): %v, want ErrConfig", err)
	}
}
