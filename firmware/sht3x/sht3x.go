// Package sht3x reads temperature and humidity from a Sensirion SHT3x sensor over I²C.
package sht3x

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
)

// Addresses the sensor answers on, chosen by its ADDR pin.
const (
	DefaultAddr uint16 = 0x44 // ADDR low
	AltAddr     uint16 = 0x45 // ADDR high
)

// Timing from the datasheet.
const (
	// MeasureTime is how long a high-repeatability measurement takes (15.5 ms at most).
	MeasureTime = 16 * time.Millisecond
	// ResetTime is how long a soft reset takes (1.5 ms at most).
	ResetTime = 2 * time.Millisecond
)

// Commands (16 bits, sent MSB first).
var (
	// CmdMeasure starts a single-shot measurement, high repeatability, no clock
	// stretching: the sensor NACKs reads until the result is ready, instead of holding
	// SCL, which many I²C masters (the Raspberry Pi's among them) mishandle.
	CmdMeasure = []byte{0x24, 0x00}
	// CmdSoftReset reloads the calibration and resets the sensor's state.
	CmdSoftReset = []byte{0x30, 0xA2}
)

// Errors of the sensor.
var (
	// ErrCRC: a word read back does not match its checksum (noise on the bus).
	ErrCRC = errors.New("sht3x: CRC mismatch")
	// ErrNoDevice: the bus failed when the sensor was addressed: nothing answers there
	// (not fitted, unpowered, wrong address or bus).
	ErrNoDevice = errors.New("sht3x: no device")
	// ErrConfig: the driver cannot be set up as configured.
	ErrConfig = errors.New("sht3x: invalid config")
)

// Config configures a Dev.
type Config struct {
	// Addr is DefaultAddr (0x44) or AltAddr (0x45); 0 means DefaultAddr.
	Addr uint16
	// Sleep waits d or until ctx is done; nil means a timer. Tests pass their own.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Dev is one SHT3x on a bus.
type Dev struct {
	mu    sync.Mutex // a command and its read must not interleave with another's
	dev   i2c.Dev
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns a Dev for the sensor at cfg.Addr on bus. It does not touch the bus.
func New(bus i2c.Bus, cfg Config) (*Dev, error) {
	if bus == nil {
		return nil, fmt.Errorf("%w: nil bus", ErrConfig)
	}
	if cfg.Addr == 0 {
		cfg.Addr = DefaultAddr
	}
	if cfg.Addr != DefaultAddr && cfg.Addr != AltAddr {
		return nil, fmt.Errorf("%w: Addr %#x (want 0x44 or 0x45)", ErrConfig, cfg.Addr)
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return &Dev{dev: i2c.Dev{Bus: bus, Addr: cfg.Addr}, sleep: cfg.Sleep}, nil
}

// Sense takes one measurement. Errors wrap ErrNoDevice when the command is not
// accepted, ErrCRC when the answer is corrupt, or ctx.Err().
func (d *Dev) Sense(ctx context.Context) (Reading, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.command(CmdMeasure); err != nil {
		return Reading{}, err
	}
	if err := d.sleep(ctx, MeasureTime); err != nil {
		return Reading{}, err
	}
	var buf [6]byte
	if err := d.dev.Tx(nil, buf[:]); err != nil {
		return Reading{}, fmt.Errorf("sht3x at %#x: read measurement: %w", d.dev.Addr, err)
	}
	r, err := Decode(buf)
	if err != nil {
		return Reading{}, fmt.Errorf("sht3x at %#x: %w", d.dev.Addr, err)
	}
	return r, nil
}

// Reset soft-resets the sensor and waits for it to come back. Errors wrap ErrNoDevice
// or are ctx.Err().
func (d *Dev) Reset(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.command(CmdSoftReset); err != nil {
		return err
	}
	return d.sleep(ctx, ResetTime)
}

func (d *Dev) command(cmd []byte) error {
	if err := d.dev.Tx(cmd, nil); err != nil {
		// The sensor takes any command it knows, so a failed write means nothing ACKed.
		return fmt.Errorf("%w at %#x: command %#x: %w", ErrNoDevice, d.dev.Addr, cmd, err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
