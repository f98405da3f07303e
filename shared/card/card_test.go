package card_test

import (
	"errors"
	"testing"

	"linli/shared/card"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // canonical form; "" for an error
		err  error
	}{
		{in: "26:123:45678", want: "26:123:45678"},
		{in: "26:0123:045678", want: "26:123:45678"},
		{in: "34:65535:1", want: "34:65535:1"},
		{in: "26:256:1", err: card.ErrCredential},   // facility over 8 bits
		{in: "26:1:65536", err: card.ErrCredential}, // card over 16 bits
		{in: "37:1:1", err: card.ErrFormat},
		{in: "99999999999:1:1", err: card.ErrCredential},
		{in: "26:1", err: card.ErrCredential},
		{in: "26:-1:1", err: card.ErrCredential},
		{in: "", err: card.ErrCredential},
	} {
		c, err := card.Parse(tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) || !errors.Is(err, card.ErrCredential) {
				t.Errorf("Parse(%q) = %v, %v; want an error wrapping %v", tc.in, c, err, tc.err)
			}
			continue
		}
		if err != nil || c.String() != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %s", tc.in, c, err, tc.want)
		}
	}
}
