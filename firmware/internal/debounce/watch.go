package debounce

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// MaxWait bounds each WaitForEdge so that a cancelled context is noticed within it: the
// periph fakes cannot be interrupted, and on gpioioctl lines a zero timeout means forever.
const MaxWait = 50 * time.Millisecond

// StepFunc is given the level of the input at now, after an edge or when a deadline it
// asked for has passed. It returns the next time it must be called even if no edge
// comes (ok false: none), or an error that stops Watch.
type StepFunc func(level gpio.Level, now time.Time) (next time.Time, ok bool, err error)

// Watch configures pin as an input with pull and both edges, then calls step with the
// pin's level once at the start, after every edge and at every deadline step returns,
// until ctx is done. It returns nil once ctx is done, or the first error of the pin or
// of step.
func Watch(ctx context.Context, pin gpio.PinIn, pull gpio.Pull, now func() time.Time, step StepFunc) error {
	if err := pin.In(pull, gpio.BothEdges); err != nil {
		return fmt.Errorf("configure %s: %w", pin, err)
	}
	next, ok, err := step(pin.Read(), now())
	for err == nil && ctx.Err() == nil {
		wait := MaxWait
		if ok {
			wait = min(wait, next.Sub(now()))
		}
		// At least a millisecond, so that a deadline already past cannot spin the loop.
		edge := pin.WaitForEdge(max(wait, time.Millisecond))
		if !edge && (!ok || now().Before(next)) {
			continue // a poll to check ctx, or an early wake-up: nothing to tell the machine
		}
		next, ok, err = step(pin.Read(), now())
	}
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
