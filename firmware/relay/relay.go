// Package relay drives a door-strike relay on a GPIO output: timed unlock pulses that extend each other, and a hold for fire-alarm release.
package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// Errors of the relay.
var (
	// ErrConfig: the relay cannot be set up as configured.
	ErrConfig = errors.New("relay: invalid config")
	// ErrDuration: a pulse was asked for with a duration that is not positive.
	ErrDuration = errors.New("relay: pulse duration is not positive")
)

// Config configures a Relay.
type Config struct {
	// Name identifies the relay in errors, e.g. "B3-main-strike".
	Name string
	// ActiveLow: the output is driven Low to release the strike (many relay boards);
	// otherwise High releases it.
	ActiveLow bool
	// After is the timer; nil means time.After. Tests pass their own.
	After func(time.Duration) <-chan time.Time
}

// Relay is a door strike (or any output that is on while someone needs it).
//
// It is on while at least one Pulse is running or Hold is set: pulses that overlap extend
// the release instead of one ending it early under another.
type Relay struct {
	pin gpio.PinOut
	cfg Config

	mu     sync.Mutex
	pulses int  // Pulse calls running
	hold   bool // Hold(true) in force
	on     bool // what the output is set to
}

// New returns a Relay on pin and sets the output off (strike locked).
func New(pin gpio.PinOut, cfg Config) (*Relay, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("%w: Name is empty", ErrConfig)
	}
	if pin == nil {
		return nil, fmt.Errorf("%w: nil pin", ErrConfig)
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	r := &Relay{pin: pin, cfg: cfg}
	if err := r.set(false); err != nil {
		return nil, err
	}
	return r, nil
}

// Pulse turns the relay on for d, then off unless another pulse or a hold still needs
// it. It blocks until d has passed or ctx is done (then the pulse ends early); run it in
// its own goroutine to keep the caller free. It returns ErrDuration for d <= 0, ctx.Err()
// when cut short, or a wrapped error from the output.
func (r *Relay) Pulse(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: %v", ErrDuration, d)
	}
	r.mu.Lock()
	r.pulses++
	err := r.apply()
	r.mu.Unlock()

	if err == nil {
		select {
		case <-r.cfg.After(d):
		case <-ctx.Done():
			err = ctx.Err()
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulses--
	if offErr := r.apply(); offErr != nil {
		return offErr // failing to lock again matters more than why the pulse ended
	}
	return err
}

// Hold keeps the relay on (true) regardless of pulses, e.g. to release an escape-route
// door during a fire alarm, or ends the hold (false): the relay then stays on only while
// a pulse runs. It returns a wrapped error from the output.
func (r *Relay) Hold(on bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hold = on
	return r.apply()
}

// On reports whether the relay is on (strike released).
func (r *Relay) On() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.on
}

// apply sets the output from the pulses and the hold; r.mu is held.
func (r *Relay) apply() error {
	want := r.hold || r.pulses > 0
	if want == r.on {
		return nil
	}
	return r.set(want)
}

func (r *Relay) set(on bool) error {
	level := gpio.Level(on != r.cfg.ActiveLow)
	if err := r.pin.Out(level); err != nil {
		return fmt.Errorf("relay %s: set %v: %w", r.cfg.Name, level, err)
	}
	r.on = on
	return nil
}
