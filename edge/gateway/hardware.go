package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"periph.io/x/conn/v3/gpio"

	"linli/firmware/board"
	"linli/firmware/contact"
	"linli/firmware/door"
	"linli/firmware/relay"
	"linli/firmware/sht3x"
	"linli/firmware/sim"
	"linli/firmware/wiegand"
	"linli/shared/config"
)

// devices are the drivers of one gateway, built from its config on a
// board.Hardware.
type devices struct {
	hw  board.Hardware
	sim *sim.Sim // nil on real hardware

	doors    []*door.Sensor
	readers  []*wiegand.Reader
	contacts []*contact.Contact
	sht      []shtSensor
	strikes  map[string]*relay.Relay // by door
	closers  []func() error          // I²C buses
	inputs   []string                // input lines, for the simulator's start
}

type shtSensor struct {
	name string
	dev  *sht3x.Dev
}

// openHardware opens what cfg.Hardware names: the simulator from its
// scenario file, or the board's host drivers with cfg.Pins as aliases. It
// also says how much faster than real time the hardware's clock runs. An
// unusable source is a *config.Error.
func openHardware(cfg *Config, log *slog.Logger) (board.Hardware, *sim.Sim, float64, error) {
	switch cfg.Hardware {
	case HardwareSim:
		sc, err := sim.LoadScenario(cfg.SimScenario)
		if err != nil {
			return nil, nil, 0, config.Errorf("sim-scenario", "%v", err)
		}
		s, err := sim.New(sc, log.With("component", "sim"))
		if err != nil {
			return nil, nil, 0, config.Errorf("sim-scenario", "%v", err)
		}
		speed := sc.Speed
		if speed == 0 {
			speed = 1
		}
		return s, s, speed, nil
	case HardwareHost:
		h, err := board.OpenHost(cfg.Pins)
		if err != nil {
			return nil, nil, 0, config.Errorf("hardware", "%v", err)
		}
		return h, nil, 1, nil
	}
	return nil, nil, 1, nil
}

func level(s string) gpio.Level { return s != "low" }

// buildDevices makes a driver for every door, reader and sensor of cfg on
// hw. A line or bus the hardware does not have is a *config.Error naming
// the section. speed is how much faster than real time hw's clock runs.
func buildDevices(cfg *Config, hw board.Hardware, s *sim.Sim, speed float64) (_ *devices, err error) {
	d := &devices{hw: hw, sim: s, strikes: map[string]*relay.Relay{}}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	after := time.After
	if speed > 0 && speed != 1 {
		// A strike pulse lasts its unlock time on the hardware's clock,
		// which the simulator may run faster than real time.
		after = func(dur time.Duration) <-chan time.Time { return time.After(time.Duration(float64(dur) / speed)) }
	}
	for _, dc := range cfg.Doors {
		dc = dc.withDefaults()
		pin, err := hw.PinIn(dc.Contact)
		if err != nil {
			return nil, config.Errorf("doors", "door %s: contact: %v", dc.Name, err)
		}
		c := door.DefaultConfig(dc.Name)
		c.OpenLevel, c.HeldOpen, c.Now = level(dc.OpenLevel), dc.HeldOpen, hw.Now
		sensor, err := door.New(pin, c)
		if err != nil {
			return nil, config.Errorf("doors", "door %s: %v", dc.Name, err)
		}
		d.doors = append(d.doors, sensor)
		d.inputs = append(d.inputs, dc.Contact)
		if dc.Strike == "" {
			continue
		}
		out, err := hw.PinOut(dc.Strike)
		if err != nil {
			return nil, config.Errorf("doors", "door %s: strike: %v", dc.Name, err)
		}
		r, err := relay.New(out, relay.Config{Name: dc.Strike, ActiveLow: dc.StrikeActiveLow, After: after})
		if err != nil {
			return nil, config.Errorf("doors", "door %s: strike: %v", dc.Name, err)
		}
		d.strikes[dc.Name] = r
	}
	for _, rc := range cfg.Readers {
		d0, err := hw.PinIn(rc.D0)
		if err != nil {
			return nil, config.Errorf("readers", "reader %s: d0: %v", rc.Name, err)
		}
		d1, err := hw.PinIn(rc.D1)
		if err != nil {
			return nil, config.Errorf("readers", "reader %s: d1: %v", rc.Name, err)
		}
		c := wiegand.DefaultConfig(rc.Name)
		c.Now = hw.Now
		r, err := wiegand.NewReader(d0, d1, c)
		if err != nil {
			return nil, config.Errorf("readers", "reader %s: %v", rc.Name, err)
		}
		d.readers = append(d.readers, r)
		d.inputs = append(d.inputs, rc.D0, rc.D1)
	}
	for _, sc := range cfg.Sensors {
		switch sc.Kind {
		case SensorSmoke, SensorWater:
			pin, err := hw.PinIn(sc.Pin)
			if err != nil {
				return nil, config.Errorf("sensors", "sensor %s: %v", sc.Name, err)
			}
			c := contact.DefaultConfig(sc.Name)
			c.AlarmLevel, c.Now = level(sc.AlarmLevel), hw.Now
			ct, err := contact.New(pin, c)
			if err != nil {
				return nil, config.Errorf("sensors", "sensor %s: %v", sc.Name, err)
			}
			d.contacts = append(d.contacts, ct)
			d.inputs = append(d.inputs, sc.Pin)
		case SensorSHT3x:
			bus, err := hw.I2C(sc.Bus)
			if err != nil {
				return nil, config.Errorf("sensors", "sensor %s: %v", sc.Name, err)
			}
			d.closers = append(d.closers, bus.Close)
			dev, err := sht3x.New(bus, sht3x.Config{Addr: sc.Addr})
			if err != nil {
				return nil, config.Errorf("sensors", "sensor %s: %v", sc.Name, err)
			}
			d.sht = append(d.sht, shtSensor{name: sc.Name, dev: dev})
		}
	}
	return d, nil
}

// waitInputs waits until the driver of every input line is listening, so
// that the simulator's first steps are not played to nobody (as on a real
// board, where a driver that starts late misses edges).
func (d *devices) waitInputs(ctx context.Context, timeout time.Duration) error {
	if d.sim == nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for _, name := range d.inputs {
		p, err := d.sim.Pin(name)
		if err != nil {
			return err
		}
		for !p.Listening() {
			if time.Now().After(deadline) {
				return fmt.Errorf("driver of %s not listening after %v", name, timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
	return nil
}

// close closes the I²C buses; the first error wins.
func (d *devices) close() error {
	var first error
	for _, c := range d.closers {
		if err := c(); err != nil && first == nil {
			first = fmt.Errorf("close I²C bus: %w", err)
		}
	}
	d.closers = nil
	return first
}
