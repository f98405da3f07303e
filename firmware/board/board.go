// Package board gives a gateway its GPIO lines and I²C buses by name, from real hardware (periph host drivers) or from the simulator.
package board

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

// ErrNotFound is wrapped when no line or bus has the name asked for.
var ErrNotFound = errors.New("board: not found")

// Hardware is what the gateway needs from a board. Both the real board (Host) and the
// simulator (sim.Sim) implement it, so the gateway runs the same drivers on either.
type Hardware interface {
	// PinIn returns the input line called name, or an error wrapping ErrNotFound.
	PinIn(name string) (gpio.PinIn, error)
	// PinOut returns the output line called name, or an error wrapping ErrNotFound.
	PinOut(name string) (gpio.PinOut, error)
	// I2C opens the bus called name, or returns an error wrapping ErrNotFound. The
	// caller closes it.
	I2C(name string) (i2c.BusCloser, error)
	// Now is the clock to give the drivers: the wall clock on real hardware, the
	// simulation's clock (which may run faster) in the simulator.
	Now() time.Time
}

// Host is the real board, through periph.io's host drivers (gpioioctl, sysfs, the SoC
// drivers of the Raspberry Pi and others).
type Host struct {
	aliases map[string]string
}

// OpenHost loads periph's host drivers. aliases maps the names used in the gateway's
// config (e.g. "B3-main-contact") to the board's own names (e.g. "GPIO17", or "1" for
// /dev/i2c-1); a name without an alias is looked up as it is.
func OpenHost(aliases map[string]string) (*Host, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("board: load host drivers: %w", err)
	}
	return &Host{aliases: aliases}, nil
}

func (h *Host) resolve(name string) string {
	if target, ok := h.aliases[name]; ok {
		return target
	}
	return name
}

// PinIn implements Hardware.
func (h *Host) PinIn(name string) (gpio.PinIn, error) { return h.pin(name) }

// PinOut implements Hardware.
func (h *Host) PinOut(name string) (gpio.PinOut, error) { return h.pin(name) }

func (h *Host) pin(name string) (gpio.PinIO, error) {
	p := gpioreg.ByName(h.resolve(name))
	if p == nil {
		return nil, fmt.Errorf("%w: GPIO %q (as %q)", ErrNotFound, name, h.resolve(name))
	}
	return p, nil
}

// I2C implements Hardware.
func (h *Host) I2C(name string) (i2c.BusCloser, error) {
	target := h.resolve(name)
	// i2creg.Open("") opens the first bus, and any failure reads alike: check the name
	// against the registry first so that a typo in the config says so.
	known := slices.ContainsFunc(i2creg.All(), func(r *i2creg.Ref) bool {
		return r.Name == target || slices.Contains(r.Aliases, target) || (r.Number >= 0 && strconv.Itoa(r.Number) == target)
	})
	if !known {
		return nil, fmt.Errorf("%w: I²C bus %q (as %q)", ErrNotFound, name, target)
	}
	bus, err := i2creg.Open(target)
	if err != nil {
		return nil, fmt.Errorf("board: open I²C bus %q: %w", name, err)
	}
	return bus, nil
}

// Now implements Hardware: the wall clock.
func (h *Host) Now() time.Time { return time.Now() }

var _ Hardware = (*Host)(nil)
