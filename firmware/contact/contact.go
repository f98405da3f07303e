// Package contact watches an alarm contact (smoke detector, water-leak sensor) on a GPIO input and reports debounced Alarm and Clear transitions.
package contact

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"

	"linli/firmware/internal/debounce"
)

// ErrConfig is wrapped by every configuration error; the message names the field.
var ErrConfig = errors.New("contact: invalid config")

// State is the debounced state of an alarm contact.
type State int

// States.
const (
	// Clear: the contact is at rest.
	Clear State = iota
	// Alarm: the detector signals an alarm.
	Alarm
)

func (s State) String() string {
	switch s {
	case Clear:
		return "clear"
	case Alarm:
		return "alarm"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Event is a transition of an alarm contact.
type Event struct {
	// Sensor is Config.Name of the contact, e.g. "B3-smoke-1".
	Sensor string
	// State is the state the contact changed to.
	State State
	// At is when the contact first took that state (the debounce delay is not in it).
	At time.Time
}

// Config configures a Contact. Start from DefaultConfig.
type Config struct {
	// Name identifies the sensor in events.
	Name string
	// AlarmLevel is what the input reads during an alarm.
	AlarmLevel gpio.Level
	// Pull is the input's pull resistor.
	Pull gpio.Pull
	// Debounce is how long the input must hold a new state before it counts.
	Debounce time.Duration
	// Now is the clock; nil means time.Now. The simulator passes its own.
	Now func() time.Time
}

// DefaultConfig suits a normally-closed alarm relay to ground on a pulled-up input: the
// relay opens on alarm (and a cut wire looks like an alarm, which is the safe side), so
// an alarm reads High.
func DefaultConfig(name string) Config {
	return Config{
		Name:       name,
		AlarmLevel: gpio.High,
		Pull:       gpio.PullUp,
		Debounce:   200 * time.Millisecond,
	}
}

// Validate reports the first bad field, wrapping ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: Name is empty", ErrConfig)
	case c.Debounce < 0:
		return fmt.Errorf("%w: Debounce %v is negative", ErrConfig, c.Debounce)
	case c.Pull > gpio.PullUp:
		return fmt.Errorf("%w: Pull %d is unknown", ErrConfig, c.Pull)
	}
	return nil
}

// Contact is an alarm contact on a GPIO input.
type Contact struct {
	pin gpio.PinIn
	cfg Config
}

// New returns a Contact for pin, or an error wrapping ErrConfig.
func New(pin gpio.PinIn, cfg Config) (*Contact, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pin == nil {
		return nil, fmt.Errorf("%w: nil pin", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Contact{pin: pin, cfg: cfg}, nil
}

// Run watches the contact and sends transitions to out until ctx is done, then returns
// nil. The contact is taken to be clear at start, so one already in alarm is reported
// as an Alarm once it has held for the debounce delay: an alarm must not go unreported
// because the gateway restarted during it. Run blocks while out is full; it never closes
// out. It returns an error only if the pin cannot be set up.
func (c *Contact) Run(ctx context.Context, out chan<- Event) error {
	deb := debounce.New(false, c.cfg.Debounce)
	var changes []debounce.Change
	err := debounce.Watch(ctx, c.pin, c.cfg.Pull, c.cfg.Now, func(l gpio.Level, now time.Time) (time.Time, bool, error) {
		changes = deb.Update(changes[:0], l == c.cfg.AlarmLevel, now)
		for _, ch := range changes {
			e := Event{Sensor: c.cfg.Name, State: Clear, At: ch.At}
			if ch.Active {
				e.State = Alarm
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return time.Time{}, false, ctx.Err()
			}
		}
		next, ok := deb.Deadline()
		return next, ok, nil
	})
	if err != nil {
		return fmt.Errorf("contact %s: %w", c.cfg.Name, err)
	}
	return nil
}
