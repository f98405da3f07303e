package wiegand

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"linli/shared/card"
)

// frame turns "1 0000 …" (spaces ignored) into bits.
func frame(s string) []byte {
	s = strings.ReplaceAll(s, " ", "")
	bits := make([]byte, len(s))
	for i, c := range s {
		bits[i] = byte(c - '0')
	}
	return bits
}

// The good frames below were worked out by hand from the format definitions, not with
// Encode: data ones are counted per half, and the parity bits make the first half even
// and the second half odd.
func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  Credential
		err   error
	}{
		{"26 fc1 card1", "1 00000001 0000 00000000 0001 0", Credential{Format: 26, Facility: 1, Card: 1}, nil},
		{"26 zero", "0 00000000 0000 00000000 0000 1", Credential{Format: 26, Facility: 0, Card: 0}, nil},
		{"26 all ones", "0 11111111 1111 11111111 1111 1", Credential{Format: 26, Facility: 255, Card: 65535}, nil},
		// facility 123 = 01111011, card 45678 = 1011001001101110: 9 ones in the first half, 6 in the second
		{"26 fc123 card45678", "1 01111011 1011 00100110 1110 1", Credential{Format: 26, Facility: 123, Card: 45678}, nil},
		{"34 fc1 card1", "1 0000000000000001 0000000000000001 0", Credential{Format: 34, Facility: 1, Card: 1}, nil},
		{"34 all ones", "0 1111111111111111 1111111111111111 1", Credential{Format: 34, Facility: 65535, Card: 65535}, nil},
		{"26 bad even parity", "0 00000001 0000 00000000 0001 0", Credential{}, ErrParity},
		{"26 bad odd parity", "1 00000001 0000 00000000 0001 1", Credential{}, ErrParity},
		{"26 one data bit flipped", "1 00000001 0000 00000000 0011 0", Credential{}, ErrParity},
		{"34 bad odd parity", "1 0000000000000001 0000000000000001 1", Credential{}, ErrParity},
		{"empty", "", Credential{}, ErrFrameLength},
		{"one bit", "1", Credential{}, ErrFrameLength},
		{"25 bits", "1 00000001 0000 00000000 0001", Credential{}, ErrFrameLength},
		{"27 bits", "1 00000001 0000 00000000 0001 00", Credential{}, ErrFrameLength},
		{"33 bits", "1 0000000000000001 000000000000001 0", Credential{}, ErrFrameLength},
		{"35 bits", "1 0000000000000001 00000000000000001 0", Credential{}, ErrFrameLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(frame(tt.frame))
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("Decode error = %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("Decode = %v, want %v", got, tt.want)
			}
			if tt.err != nil {
				return
			}
			bits, err := Encode(got)
			if err != nil || string(bits) != string(frame(tt.frame)) {
				t.Errorf("Encode(%v) = %v %v, want the frame back", got, bits, err)
			}
		})
	}
}

func TestDecodeBadBit(t *testing.T) {
	bits := frame("1 00000001 0000 00000000 0001 0")
	bits[3] = 2
	if _, err := Decode(bits); !errors.Is(err, ErrBadBit) {
		t.Errorf("Decode = %v, want ErrBadBit", err)
	}
}

// TestDecodeEveryLength: only 26 and 34 bits are frames, whatever the bits.
func TestDecodeEveryLength(t *testing.T) {
	for n := 0; n <= MaxFrameBits+1; n++ {
		for _, fill := range []byte{0, 1} {
			bits := make([]byte, n)
			for i := range bits {
				bits[i] = fill
			}
			_, err := Decode(bits)
			switch {
			case n != 26 && n != 34 && !errors.Is(err, ErrFrameLength):
				t.Errorf("%d bits of %d: %v, want ErrFrameLength", n, fill, err)
			case (n == 26 || n == 34) && errors.Is(err, ErrFrameLength):
				t.Errorf("%d bits of %d: %v, want a parity verdict", n, fill, err)
			}
		}
	}
}

// TestEveryFacilitySingleFlips encodes every 26-bit facility code with cards that set
// each card bit, and checks that the frame decodes back and that every single flipped
// bit is caught.
func TestEveryFacilitySingleFlips(t *testing.T) {
	cards := []uint32{0, 65535}
	for b := range 16 {
		cards = append(cards, 1<<b)
	}
	for _, format := range []int{26, 34} {
		facilities := 256
		for fc := range facilities {
			if format == 34 {
				fc = fc*257 + 1 // spread over 16 bits, still exhaustive per byte pattern
			}
			for _, card := range cards {
				c := Credential{Format: format, Facility: uint32(fc % (1 << layout(format).FacilityBits)), Card: card}
				bits, err := Encode(c)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := Decode(bits); err != nil || got != c {
					t.Fatalf("Decode(Encode(%v)) = %v, %v", c, got, err)
				}
				for i := range bits {
					bits[i] ^= 1
					if got, err := Decode(bits); !errors.Is(err, ErrParity) {
						t.Fatalf("%v with bit %d flipped: %v %v, want ErrParity", c, i, got, err)
					}
					bits[i] ^= 1
				}
			}
		}
	}
}

func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		format := rapid.SampledFrom([]int{26, 34}).Draw(t, "format")
		f := layout(format)
		c := Credential{
			Format:   format,
			Facility: rapid.Uint32Max(1<<f.FacilityBits-1).Draw(t, "facility"),
			Card:     rapid.Uint32Max(1<<f.CardBits-1).Draw(t, "card"),
		}
		bits, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Decode(bits); err != nil || got != c {
			t.Fatalf("Decode(Encode(%v)) = %v, %v", c, got, err)
		}
		if got, err := ParseCredential(c.String()); err != nil || got != c {
			t.Fatalf("ParseCredential(%q) = %v, %v", c.String(), got, err)
		}
	})
}

func TestParseCredential(t *testing.T) {
	tests := []struct {
		in   string
		want Credential
		ok   bool
	}{
		{"26:123:45678", Credential{Format: 26, Facility: 123, Card: 45678}, true},
		{"34:65535:1", Credential{Format: 34, Facility: 65535, Card: 1}, true},
		{"26:0:0", Credential{Format: 26, Facility: 0, Card: 0}, true},
		{"26:256:1", Credential{}, false},   // facility over 8 bits
		{"26:1:65536", Credential{}, false}, // card over 16 bits
		{"34:65536:1", Credential{}, false},
		{"37:1:1", Credential{}, false},
		{"26:1", Credential{}, false},
		{"26:1:2:3", Credential{}, false},
		{"26:-1:2", Credential{}, false},
		{"26: 1:2", Credential{}, false},
		{"+26:1:2", Credential{}, false},
		{"99999999999:1:2", Credential{}, false},
		{"", Credential{}, false},
	}
	for _, tt := range tests {
		got, err := ParseCredential(tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("ParseCredential(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrCredential) {
			t.Errorf("ParseCredential(%q) error %v does not wrap ErrCredential", tt.in, err)
		}
	}
}

func TestEncodeInvalid(t *testing.T) {
	for _, c := range []Credential{{Format: 26, Facility: 256, Card: 0}, {Format: 26, Facility: 0, Card: 1 << 16}, {Format: 34, Facility: 1 << 16, Card: 0}, {Format: 0, Facility: 0, Card: 0}, {Format: 37, Facility: 1, Card: 1}} {
		if _, err := Encode(c); !errors.Is(err, ErrCredential) {
			t.Errorf("Encode(%v) = %v, want ErrCredential", c, err)
		}
	}
}

// layout is the data layout of a format the test knows exists.
func layout(format int) card.Format {
	f, ok := card.LookupFormat(format)
	if !ok {
		panic(fmt.Sprintf("no format %d", format))
	}
	return f
}
