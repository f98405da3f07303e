package contact_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
	"periph.io/x/conn/v3/gpio"

	"linli/firmware/contact"
	"linli/firmware/gpiosim"
	"linli/firmware/internal/clocktest"
	"linli/shared/test/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// run starts c and stops it when the test ends.
func run(t *testing.T, c *contact.Contact, pin *gpiosim.Pin) <-chan contact.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan contact.Event, 16)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, events) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	poll.WaitForWithin(t, 5*time.Second, "contact to configure its pin", pin.Listening)
	return events
}

func next(t *testing.T, events <-chan contact.Event) contact.Event {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	panic("unreachable")
}

func TestContact(t *testing.T) {
	tests := []struct {
		name       string
		alarmLevel gpio.Level
	}{
		{"alarm high", gpio.High},
		{"alarm low", gpio.Low},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := clocktest.New()
			cfg := contact.DefaultConfig("B3-smoke-1")
			cfg.AlarmLevel, cfg.Debounce, cfg.Now = tt.alarmLevel, time.Second, clock.Now
			pin := gpiosim.New("smoke", !tt.alarmLevel)
			c, err := contact.New(pin, cfg)
			if err != nil {
				t.Fatal(err)
			}
			events := run(t, c, pin)
			ctx := context.Background()

			// A blip shorter than the debounce delay is ignored.
			if err := pin.Drive(ctx, tt.alarmLevel); err != nil {
				t.Fatal(err)
			}
			clock.Add(500 * time.Millisecond)
			if err := pin.Drive(ctx, !tt.alarmLevel); err != nil {
				t.Fatal(err)
			}
			clock.Add(time.Second)
			alarmAt := clock.Now()
			if err := pin.Drive(ctx, tt.alarmLevel); err != nil {
				t.Fatal(err)
			}
			clock.Add(time.Second)
			if got, want := next(t, events), (contact.Event{Sensor: "B3-smoke-1", State: contact.Alarm, At: alarmAt}); got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			clearAt := clock.Add(time.Minute)
			if err := pin.Drive(ctx, !tt.alarmLevel); err != nil {
				t.Fatal(err)
			}
			clock.Add(time.Second)
			if got, want := next(t, events), (contact.Event{Sensor: "B3-smoke-1", State: contact.Clear, At: clearAt}); got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}

// TestAlarmAtStart: a detector already in alarm when the gateway starts is reported.
func TestAlarmAtStart(t *testing.T) {
	t.Parallel()
	clock := clocktest.New()
	cfg := contact.DefaultConfig("B3-water-1")
	cfg.Debounce, cfg.Now = time.Second, clock.Now
	pin := gpiosim.New("water", gpio.High)
	c, err := contact.New(pin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	events := run(t, c, pin)
	clock.Add(time.Second)
	if got, want := next(t, events), (contact.Event{Sensor: "B3-water-1", State: contact.Alarm, At: start}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*contact.Config)
	}{
		{"empty name", func(c *contact.Config) { c.Name = "" }},
		{"negative debounce", func(c *contact.Config) { c.Debounce = -time.Second }},
		{"unknown pull", func(c *contact.Config) { c.Pull = 7 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := contact.DefaultConfig("c")
			tt.mutate(&cfg)
			if _, err := contact.New(gpiosim.New("p", gpio.Low), cfg); !errors.Is(err, contact.ErrConfig) {
				t.Errorf("New: %v, want ErrConfig", err)
			}
		})
	}
	if _, err := contact.New(nil, contact.DefaultConfig("c")); !errors.Is(err, contact.ErrConfig) {
		t.Errorf("New(nil pin): %v, want ErrConfig", err)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[contact.State]string{contact.Clear: "clear", contact.Alarm: "alarm", 5: "State(5)"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(s), got, want)
		}
	}
}
