// Package wiegand reads access cards from a Wiegand reader on two GPIO inputs and decodes 26-bit (H10301) and 34-bit frames.
package wiegand

import (
	"errors"
	"fmt"

	"linli/shared/card"
)

// Errors of decoding. A frame that fails any check is a bad read, never a credential.
var (
	// ErrFrameLength: the frame is not 26 or 34 bits long (a partial read, noise, or an
	// unsupported format).
	ErrFrameLength = card.ErrFormat
	// ErrParity: a parity bit does not match its half of the frame.
	ErrParity = errors.New("wiegand: parity error")
	// ErrBadBit: a frame element is neither 0 nor 1.
	ErrBadBit = errors.New("wiegand: bit is not 0 or 1")
	// ErrCredential: a credential cannot be parsed or does not fit its format.
	ErrCredential = card.ErrCredential
)

// A frame is a leading even parity bit over the first half of the data, the data (as
// card.Format lays it out), and a trailing odd parity bit over the second half.

// Credential is what a card carries; package card owns its text form and limits, which
// the hub needs without this package's GPIO code.
type Credential = card.Credential

// ParseCredential parses the canonical form "<format>:<facility>:<card>" and checks that
// the numbers fit the format. Errors wrap ErrCredential.
func ParseCredential(s string) (Credential, error) {
	return card.Parse(s)
}

// Decode checks and decodes a frame given as one element per bit (0 or 1), in the order
// received. Errors wrap ErrBadBit, ErrFrameLength or ErrParity.
func Decode(bits []byte) (Credential, error) {
	for i, b := range bits {
		if b > 1 {
			return Credential{}, fmt.Errorf("%w: element %d is %d", ErrBadBit, i, b)
		}
	}
	f, ok := card.LookupFormat(len(bits))
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
		Facility: uint32(data >> f.CardBits),
		Card:     uint32(data & (1<<f.CardBits - 1)),
	}, nil
}

// Encode returns the frame a reader sends for c, one element per bit. Errors wrap
// ErrCredential.
func Encode(c Credential) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	f, _ := card.LookupFormat(c.Format) // Validate checked it
	n := c.Format
	data := uint64(c.Facility)<<f.CardBits | uint64(c.Card)
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
