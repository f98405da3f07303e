package wiegand

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary frames to Decode: it must not panic, every error must be one
// of the sentinels, and a frame that decodes must be exactly the frame Encode makes.
func FuzzDecode(f *testing.F) {
	f.Add(frame("1 00000001 0000 00000000 0001 0"))
	f.Add(frame("1 0000000000000001 0000000000000001 0"))
	f.Add(frame("0 00000001 0000 00000000 0001 0"))
	f.Add([]byte{})
	f.Add([]byte{2, 0, 1})
	f.Fuzz(func(t *testing.T, bits []byte) {
		c, err := Decode(bits)
		if err != nil {
			if !errors.Is(err, ErrFrameLength) && !errors.Is(err, ErrParity) && !errors.Is(err, ErrBadBit) {
				t.Fatalf("Decode: unexpected error %v", err)
			}
			return
		}
		again, err := Encode(c)
		if err != nil {
			t.Fatalf("Encode(%v) of a decoded credential: %v", c, err)
		}
		if !bytes.Equal(again, bits) {
			t.Fatalf("Encode(Decode(%v)) = %v", bits, again)
		}
	})
}

// FuzzParseCredential: ParseCredential must not panic, and what it accepts must print
// back to a string that parses to the same credential.
func FuzzParseCredential(f *testing.F) {
	for _, s := range []string{"26:123:45678", "34:65535:0", "26:0123:1", "x", "26::1", "26:1:1:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCredential(s)
		if err != nil {
			if !errors.Is(err, ErrCredential) {
				t.Fatalf("ParseCredential(%q): %v does not wrap ErrCredential", s, err)
			}
			return
		}
		if again, err := ParseCredential(c.String()); err != nil || again != c {
			t.Fatalf("ParseCredential(%q) = %v, but its String %q parses to %v, %v", s, c, c.String(), again, err)
		}
	})
}
