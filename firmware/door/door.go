// Package door watches a door contact (reed switch) on a GPIO input and reports debounced Open, Close and HeldOpen events.
package door

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"

	"linli/firmware/internal/debounce"
)

// ErrConfig is wrapped by every configuration error; the message names the field.
var ErrConfig = errors.New("door: invalid config")

// Kind is what happened at a door.
type Kind int

// Event kinds.
const (
	// Open: the door opened (debounced).
	Open Kind = iota + 1
	// Close: the door closed (debounced).
	Close
	// HeldOpen: the door has been open for Config.HeldOpen; sent once per opening.
	HeldOpen
)

func (k Kind) String() string {
	switch k {
	case Open:
		return "open"
	case Close:
		return "close"
	case HeldOpen:
		return "held_open"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Event is one change at a door.
type Event struct {
	// Door is Config.Name of the sensor that saw it.
	Door string
	Kind Kind
	// At is when it happened: for Open and Close when the contact first moved (not when
	// the debounce delay passed), for HeldOpen the opening time plus Config.HeldOpen.
	At time.Time
}

// Config configures a Sensor. Start from DefaultConfig.
type Config struct {
	// Name identifies the door in events, e.g. "B3-main".
	Name string
	// OpenLevel is what the input reads while the door is open.
	OpenLevel gpio.Level
	// Pull is the input's pull resistor.
	Pull gpio.Pull
	// Debounce is how long the contact must hold a new state before it counts.
	Debounce time.Duration
	// HeldOpen is how long the door may stay open before HeldOpen; 0 disables it.
	HeldOpen time.Duration
	// Now is the clock; nil means time.Now. The simulator passes its own.
	Now func() time.Time
}

// DefaultConfig suits a normally-open reed switch to ground on a pulled-up input: the
// magnet closes the switch while the door is shut, so an open door reads High.
func DefaultConfig(name string) Config {
	return Config{
		Name:      name,
		OpenLevel: gpio.High,
		Pull:      gpio.PullUp,
		Debounce:  50 * time.Millisecond,
		HeldOpen:  30 * time.Second,
	}
}

// Validate reports the first bad field, wrapping ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: Name is empty", ErrConfig)
	case c.Debounce < 0:
		return fmt.Errorf("%w: Debounce %v is negative", ErrConfig, c.Debounce)
	case c.HeldOpen < 0:
		return fmt.Errorf("%w: HeldOpen %v is negative", ErrConfig, c.HeldOpen)
	case c.Pull > gpio.PullUp:
		return fmt.Errorf("%w: Pull %d is unknown", ErrConfig, c.Pull)
	}
	return nil
}

// Sensor is a door contact on a GPIO input.
type Sensor struct {
	pin gpio.PinIn
	cfg Config
}

// New returns a Sensor for pin, or an error wrapping ErrConfig.
func New(pin gpio.PinIn, cfg Config) (*Sensor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pin == nil {
		return nil, fmt.Errorf("%w: nil pin", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sensor{pin: pin, cfg: cfg}, nil
}

// Run watches the contact and sends events to out until ctx is done, then returns nil.
// The door's state at start is not an event, but a door already open is timed for
// HeldOpen from the start. Run blocks while out is full; it never closes out, so several
// sensors may share one channel. It returns an error only if the pin cannot be set up.
func (s *Sensor) Run(ctx context.Context, out chan<- Event) error {
	var (
		m      *Machine
		events []Event
	)
	err := debounce.Watch(ctx, s.pin, s.cfg.Pull, s.cfg.Now, func(l gpio.Level, now time.Time) (time.Time, bool, error) {
		open := l == s.cfg.OpenLevel
		if m == nil {
			m = NewMachine(open, now, s.cfg.Debounce, s.cfg.HeldOpen)
		}
		events = m.Step(events[:0], open, now)
		for _, e := range events {
			e.Door = s.cfg.Name
			select {
			case out <- e:
			case <-ctx.Done():
				return time.Time{}, false, ctx.Err()
			}
		}
		next, ok := m.Deadline()
		return next, ok, nil
	})
	if err != nil {
		return fmt.Errorf("door %s: %w", s.cfg.Name, err)
	}
	return nil
}
