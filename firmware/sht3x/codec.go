package sht3x

import (
	"fmt"
	"math"
)

// Reading is one measurement.
type Reading struct {
	// Temperature in degrees Celsius, -45 to 130.
	Temperature float64
	// Humidity is relative humidity in percent, 0 to 100.
	Humidity float64
}

// CRC8 is the sensor's checksum: polynomial 0x31, initial value 0xFF, no reflection, no
// final XOR. CRC8([]byte{0xBE, 0xEF}) is 0x92.
func CRC8(data []byte) byte {
	crc := byte(0xFF)
	for _, b := range data {
		crc ^= b
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x31
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Decode checks and converts a measurement as read from the sensor: temperature MSB,
// LSB, CRC, humidity MSB, LSB, CRC. Errors wrap ErrCRC.
func Decode(b [6]byte) (Reading, error) {
	for i, name := range []string{"temperature", "humidity"} {
		w := b[3*i : 3*i+3]
		if got := CRC8(w[:2]); got != w[2] {
			return Reading{}, fmt.Errorf("%w: %s word %#02x%02x has CRC %#02x, want %#02x", ErrCRC, name, w[0], w[1], w[2], got)
		}
	}
	return Reading{
		Temperature: Temperature(uint16(b[0])<<8 | uint16(b[1])),
		Humidity:    Humidity(uint16(b[3])<<8 | uint16(b[4])),
	}, nil
}

// Temperature converts a raw temperature word to degrees Celsius.
func Temperature(raw uint16) float64 { return -45 + 175*float64(raw)/65535 }

// Humidity converts a raw humidity word to percent relative humidity.
func Humidity(raw uint16) float64 { return 100 * float64(raw) / 65535 }

// Encode returns the six bytes a sensor would send for r, with CRCs, the values clamped
// to the sensor's range and rounded to its resolution. The simulator uses it.
func Encode(r Reading) [6]byte {
	t := raw((r.Temperature + 45) / 175)
	h := raw(r.Humidity / 100)
	b := [6]byte{byte(t >> 8), byte(t), 0, byte(h >> 8), byte(h), 0}
	b[2] = CRC8(b[0:2])
	b[5] = CRC8(b[3:5])
	return b
}

// raw scales a fraction of the full range to a word.
func raw(fraction float64) uint16 {
	if math.IsNaN(fraction) {
		return 0
	}
	return uint16(math.Round(min(max(fraction, 0), 1) * 65535))
}
