package board_test

import (
	"errors"
	"testing"

	"linli/firmware/board"
)

// TestHostNotFound loads the host drivers of whatever machine runs the test (none of
// which has these names) and checks that unknown names say so.
func TestHostNotFound(t *testing.T) {
	h, err := board.OpenHost(map[string]string{"B3-main-contact": "NO-SUCH-GPIO"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.PinIn("B3-main-contact"); !errors.Is(err, board.ErrNotFound) {
		t.Errorf("PinIn = %v, want ErrNotFound", err)
	}
	if _, err := h.PinOut("no-such-strike"); !errors.Is(err, board.ErrNotFound) {
		t.Errorf("PinOut = %v, want ErrNotFound", err)
	}
	if _, err := h.I2C("no-such-bus"); !errors.Is(err, board.ErrNotFound) {
		t.Errorf("I2C = %v, want ErrNotFound", err)
	}
	if h.Now().IsZero() {
		t.Error("Now is zero")
	}
}
