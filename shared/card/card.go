// Package card is an access card's credential as the whole system names it:
// the Wiegand form "<format>:<facility>:<card>" and the limits of each
// format. It is pure (no hardware), so the hub can canonicalise cards an
// operator types without linking the reader's GPIO code; firmware/wiegand
// turns frames into these credentials and back.
package card

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors of parsing and checking a credential. The messages keep the
// words the reader's package has always used, since operators see them.
var (
	// ErrCredential: a credential cannot be parsed or does not fit its format.
	ErrCredential = errors.New("wiegand: invalid credential")
	// ErrFormat: the format (frame length in bits) is not 26 or 34.
	ErrFormat = errors.New("wiegand: unsupported frame length")
)

// Format is the data layout of one Wiegand format: the facility code then
// the card number, most significant bit first.
type Format struct {
	FacilityBits, CardBits int
}

var formats = map[int]Format{
	26: {FacilityBits: 8, CardBits: 16},  // HID H10301
	34: {FacilityBits: 16, CardBits: 16}, // the common 34-bit layout (HID H10306)
}

// LookupFormat returns the layout of the format that is bits long.
func LookupFormat(bits int) (Format, bool) {
	f, ok := formats[bits]
	return f, ok
}

// Credential is what a card carries.
//
// Its canonical text form, from String and for Parse, is
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

// Validate reports whether the credential fits its format. Errors wrap
// ErrCredential, and ErrFormat for an unknown format.
func (c Credential) Validate() error {
	f, ok := formats[c.Format]
	switch {
	case !ok:
		return fmt.Errorf("%w: format %d (want 26 or 34): %w", ErrCredential, c.Format, ErrFormat)
	case c.Facility >= 1<<f.FacilityBits:
		return fmt.Errorf("%w: facility %d does not fit %d bits", ErrCredential, c.Facility, f.FacilityBits)
	case c.Card >= 1<<f.CardBits:
		return fmt.Errorf("%w: card %d does not fit %d bits", ErrCredential, c.Card, f.CardBits)
	}
	return nil
}

// Parse parses the canonical form "<format>:<facility>:<card>" and checks
// that the numbers fit the format. Errors wrap ErrCredential.
func Parse(s string) (Credential, error) {
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
