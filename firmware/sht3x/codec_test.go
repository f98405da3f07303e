package sht3x

import (
	"errors"
	"math"
	"testing"
)

func TestCRC8(t *testing.T) {
	tests := []struct {
		data []byte
		want byte
	}{
		{[]byte{0xBE, 0xEF}, 0x92}, // the datasheet's check value
		{[]byte{}, 0xFF},           // the initial value
		{[]byte{0x00}, 0xAC},
	}
	for _, tt := range tests {
		if got := CRC8(tt.data); got != tt.want {
			t.Errorf("CRC8(% x) = %#02x, want %#02x", tt.data, got, tt.want)
		}
	}
}

// TestCRC8EveryWord checks all 65,536 words: a word followed by its CRC checks to zero
// (the defining property of a CRC with no final XOR) and Decode accepts it. Single-bit
// errors are checked on a spread of words: a CRC is affine, so whether a flip of a given
// bit is caught does not depend on the word, and every word would only repeat the check.
func TestCRC8EveryWord(t *testing.T) {
	good := Encode(Reading{Temperature: 20, Humidity: 50})
	for w := range 1 << 16 {
		word := [3]byte{byte(w >> 8), byte(w), 0}
		word[2] = CRC8(word[:2])
		if CRC8(word[:]) != 0 {
			t.Fatalf("CRC8 of %x followed by its CRC is not 0", word)
		}
		b := good
		copy(b[3:], word[:])
		if _, err := Decode(b); err != nil {
			t.Fatalf("Decode(% x): %v", b, err)
		}
		if w%251 != 0 {
			continue
		}
		for bit := range 24 {
			bad := b
			bad[3+bit/8] ^= 1 << (bit % 8)
			if _, err := Decode(bad); !errors.Is(err, ErrCRC) {
				t.Fatalf("Decode(% x) with bit %d flipped: %v, want ErrCRC", b, bit, err)
			}
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		bytes [6]byte
		want  Reading
		err   error
	}{
		{"datasheet word", [6]byte{0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x92},
			Reading{-45 + 175*48879.0/65535, 100 * 48879.0 / 65535}, nil},
		{"bottom of range", [6]byte{0x00, 0x00, 0x81, 0x00, 0x00, 0x81}, Reading{-45, 0}, nil},
		{"top of range", [6]byte{0xFF, 0xFF, 0xAC, 0xFF, 0xFF, 0xAC}, Reading{130, 100}, nil},
		{"bad temperature CRC", [6]byte{0xBE, 0xEF, 0x93, 0xBE, 0xEF, 0x92}, Reading{}, ErrCRC},
		{"bad humidity CRC", [6]byte{0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x00}, Reading{}, ErrCRC},
		{"all zero", [6]byte{}, Reading{}, ErrCRC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.bytes)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("Decode error = %v, want %v", err, tt.err)
			}
			if !near(got, tt.want) {
				t.Errorf("Decode = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		in, want Reading
	}{
		{Reading{25, 50}, Reading{25, 50}},
		{Reading{-45, 0}, Reading{-45, 0}},
		{Reading{130, 100}, Reading{130, 100}},
		{Reading{-80, -5}, Reading{-45, 0}},    // clamped
		{Reading{200, 150}, Reading{130, 100}}, // clamped
		{Reading{math.NaN(), math.NaN()}, Reading{-45, 0}},
	}
	for _, tt := range tests {
		got, err := Decode(Encode(tt.in))
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", tt.in, err)
		}
		// One raw step is 175/65535 °C and 100/65535 %: the rounding error is half that.
		if math.Abs(got.Temperature-tt.want.Temperature) > 0.0014 || math.Abs(got.Humidity-tt.want.Humidity) > 0.0008 {
			t.Errorf("Decode(Encode(%+v)) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// near compares readings to well under the sensor's resolution: the expected values are
// exact constant arithmetic, Decode's are float64 steps.
func near(a, b Reading) bool {
	return math.Abs(a.Temperature-b.Temperature) < 1e-9 && math.Abs(a.Humidity-b.Humidity) < 1e-9
}
