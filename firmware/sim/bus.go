package sim

import (
	"bytes"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"linli/firmware/sht3x"
)

// Bus is a simulated I²C bus with SHT3x sensors on it. It answers the sensor's real
// command bytes: a measurement command latches the current values, and the next 6-byte
// read returns them with their CRCs; an address with no sensor fails like a NACK.
type Bus struct {
	name string

	mu      sync.Mutex
	sensors map[uint16]*simSensor
}

type simSensor struct {
	reading sht3x.Reading
	result  []byte // latched by a measurement command until read
}

func newBus(name string) *Bus { return &Bus{name: name, sensors: map[uint16]*simSensor{}} }

// String implements conn.Resource.
func (b *Bus) String() string { return "sim-i2c:" + b.name }

// Tx implements i2c.Bus.
func (b *Bus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sensors[addr]
	if !ok {
		return fmt.Errorf("%s: no ACK from %#x", b, addr)
	}
	switch {
	case len(r) == 0 && bytes.Equal(w, sht3x.CmdMeasure):
		res := sht3x.Encode(s.reading)
		s.result = res[:]
	case len(r) == 0 && bytes.Equal(w, sht3x.CmdSoftReset):
		s.result = nil
	case len(w) == 0 && len(r) > 0 && len(r) <= 6 && s.result != nil:
		copy(r, s.result)
		s.result = nil
	default:
		// The sensor NACKs what it does not understand, and reads with nothing measured.
		return fmt.Errorf("%s: %#x NACKs write % x / read of %d bytes", b, addr, w, len(r))
	}
	return nil
}

// SetSpeed implements i2c.Bus.
func (b *Bus) SetSpeed(physic.Frequency) error { return nil }

// Close implements i2c.BusCloser. The bus stays usable: it belongs to the simulation.
func (b *Bus) Close() error { return nil }

// Reading returns what the sensor at addr currently measures.
func (b *Bus) Reading(addr uint16) (sht3x.Reading, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sensors[addr]
	if !ok {
		return sht3x.Reading{}, false
	}
	return s.reading, true
}

// update changes what the sensor at addr measures.
func (b *Bus) update(addr uint16, f func(*sht3x.Reading)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.sensors[addr].reading)
}

var _ i2c.BusCloser = (*Bus)(nil)
