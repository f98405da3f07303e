// Package wiegand reads access cards from a Wiegand reader on two GPIO inputs and decodes 26-bit (H10301) and 34-bit frames.
package wiegand

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors of decoding. A frame that fails any check is a bad read, never a credential.
var (
	// ErrFrameLength: the frame is not 26 or 34 bits long (a partial read, noise, or an
	// unsupported format).
	ErrFrameLength = errors.New("wiegand: unsupported frame length")
	// ErrParity: a parity bit does not match its half of the frame.
	ErrParity = errors.New("wiegand: parity error")
	// ErrBadBit: a frame element is neither 0 nor 1.
	ErrBadBit = errors.New("wiegand: bit is not 0 or 1")
	// ErrCredential: a credential cannot be parsed or does not fit its format.
	ErrCredential = errors.New("wiegand: invalid credential")
)

// format describes a frame: a leading even parity bit over the first half of the data,
// the data (facility code then card number, most significant bit first), and a trailing
// odd parity bit over the second half.
type format struct {
	facilityBits, cardBits int
}

var formats = map[int]format{
	26: {facilityBits: 8, cardBits: 16},  // HID H10301
	34: {facilityBits: 16, cardBits: 16}, // the common 34-bit layout (HID H10306)
}

// Credential is what a card carries.
//
// Its canonical text form, from String and for ParseCredential, is
// "<format>:<facility>:<card>" in decimal without leading zeros, e.g. "26:123:45678".
type Credential struct {
	// Format is the frame length in bits: 26 or 34.
	Format int
	// Facility is the facility (site) code: 8 bits in 26-bit frames, 16 in 34-bit ones.
	Facility uint32
	// Card is the card number: 16 bits.
	Card uint32
}

// String returns the canonical form "<format>:<facility>:<card>".
func (c Credential) String() string {
	return fmt.Sprintf("%d:%d:%d", c.Format, c.Facility, c.Card)
}

// Validate reports whether the credential fits its format.
func (c Credential) Validate() error {
	f, ok := formats[c.Format]
	switch {
	case !ok:
		return fmt.Errorf("%w: format %d (want 26 or 34): %w", ErrCredential, c.Format, ErrFrameLength)
	case c.Facility >= 1<<f.facilityBits:
		return fmt.Errorf("%w: facility %d does not fit %d bits", ErrCredential, c.Facility, f.facilityBits)
	case c.Card >= 1<<f.cardBits:
		return fmt.Errorf("%w: card %d does not fit %d bits", ErrCredential, c.Card, f.cardBits)
	}
	return nil
}

// ParseCredential parses the canonical form "<format>:<facility>:<card>" and checks that
// the numbers fit the format. Errors wrap ErrCredential.
func ParseCredential(s string) (Credential, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Credential{}, fmt.Errorf("%w: %q is not format:facility:card", ErrCredential, s)
	}
	var n [3]uint64
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Credential{}, fmt.Errorf("%w: %q: %w", ErrCredential, s, err)
		}
		n[i] = v
	}
	if n[0] > 64 {
		return Credential{}, fmt.Errorf("%w: %q: format %d (want 26 or 34)", ErrCredential, s, n[0])
	}
	c := Credential{Format: int(n[0]), Facility: uint32(n[1]), Card: uint32(n[2])}
	if err := c.Validate(); err != nil {
		return Credential{}, fmt.Errorf("%q: %w", s, err)
	}
	return c, nil
}

// Decode checks and decodes a frame given as one element per bit (0 or 1), in the order
// received. Errors wrap ErrBadBit, ErrFrameLength or ErrParity.
func Decode(bits []byte) (Credential, error) {
	for i, b := range bits {
		if b > 1 {
			return Credential{}, fmt.Errorf("%w: element %d is %d", ErrBadBit, i, b)
		}
	}
	f, ok := formats[len(bits)]
	if !ok {
		return Credential{}, fmt.Errorf("%w: %d bits (want 26 or 34)", ErrFrameLength, len(bits))
	}
	n := len(bits)
	half := (n - 2) / 2
	// Even parity: the leading bit and the first half of the data hold an even number of
	// ones; odd parity: the second half and the trailing bit an odd number.
	if ones(bits[:1+half])%2 != 0 {
		return Credential{}, fmt.Errorf("%w: even parity over bits 0-%d of %d", ErrParity, half, n)
	}
	if ones(bits[1+half:])%2 != 1 {
		return Credential{}, fmt.Errorf("%w: odd parity over bits %d-%d of %d", ErrParity, 1+half, n-1, n)
	}
	var data uint64
	for _, b := range bits[1 : n-1] {
		data = data<<1 | uint64(b)
	}
	return Credential{
		Format:   n,
		Facility: uint32(data >> f.cardBits),
		Card:     uint32(data & (1<<f.cardBits - 1)),
	}, nil
}

// Encode returns the frame a reader sends for c, one element per bit. Errors wrap
// ErrCredential.
func Encode(c Credential) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	f := formats[c.Format]
	n := c.Format
	data := uint64(c.Facility)<<f.cardBits | uint64(c.Card)
	bits := make([]byte, n)
	for i := n - 2; i >= 1; i-- {
		bits[i] = byte(data & 1)
		data >>= 1
	}
	half := (n - 2) / 2
	bits[0] = byte(ones(bits[1:1+half]) % 2)
	bits[n-1] = byte(1 - ones(bits[1+half:n-1])%2)
	return bits, nil
}

func ones(bits []byte) int {
	n := 0
	for _, b := range bits {
		n += int(b)
	}
	return n
}
