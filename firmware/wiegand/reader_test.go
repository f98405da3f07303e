package wiegand_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
	"periph.io/x/conn/v3/gpio"

	"linli/firmware/gpiosim"
	"linli/firmware/internal/clocktest"
	"linli/firmware/wiegand"
	"linli/shared/test/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// reader runs a Reader on simulated lines and stops it when the test ends.
type reader struct {
	d0, d1 *gpiosim.Pin
	clock  *clocktest.Clock
	swipes chan wiegand.Swipe
}

func startReader(t *testing.T) *reader {
	t.Helper()
	r := &reader{
		d0:     gpiosim.New("d0", gpio.High),
		d1:     gpiosim.New("d1", gpio.High),
		clock:  clocktest.New(),
		swipes: make(chan wiegand.Swipe, 8),
	}
	cfg := wiegand.DefaultConfig("B3-main")
	cfg.Now = r.clock.Now
	rd, err := wiegand.NewReader(r.d0, r.d1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rd.Run(ctx, r.swipes) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	poll.WaitForWithin(t, 5*time.Second, "the reader to listen", func() bool { return r.d0.Listening() && r.d1.Listening() })
	return r
}

// send pulses the frame's bits as a reader does: a low pulse on D0 for 0, on D1 for 1.
func (r *reader) send(t *testing.T, bits []byte) {
	t.Helper()
	ctx := context.Background()
	for _, b := range bits {
		line := r.d0
		if b == 1 {
			line = r.d1
		}
		if err := line.Drive(ctx, gpio.Low); err != nil {
			t.Fatal(err)
		}
		if err := line.Drive(ctx, gpio.High); err != nil {
			t.Fatal(err)
		}
		r.clock.Add(2 * time.Millisecond)
	}
}

func (r *reader) next(t *testing.T) wiegand.Swipe {
	t.Helper()
	r.clock.Add(25 * time.Millisecond) // the gap that ends the frame
	select {
	case s := <-r.swipes:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no swipe within 5s")
	}
	panic("unreachable")
}

func mustEncode(t *testing.T, s string) []byte {
	t.Helper()
	c, err := wiegand.ParseCredential(s)
	if err != nil {
		t.Fatal(err)
	}
	bits, err := wiegand.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return bits
}

func TestReader(t *testing.T) {
	r := startReader(t)
	tests := []struct {
		name string
		bits []byte
		want string // credential, or "" for a bad read
		err  error
	}{
		{"26-bit", mustEncode(t, "26:123:45678"), "26:123:45678", nil},
		{"34-bit", mustEncode(t, "34:4097:513"), "34:4097:513", nil},
		{"bad parity", func() []byte { b := mustEncode(t, "26:1:1"); b[5] ^= 1; return b }(), "", wiegand.ErrParity},
		{"partial frame", mustEncode(t, "26:1:1")[:20], "", wiegand.ErrFrameLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := r.clock.Now()
			r.send(t, tt.bits)
			s := r.next(t)
			if s.Reader != "B3-main" || !s.At.Equal(start) || string(s.Bits) != string(tt.bits) {
				t.Errorf("swipe %+v: want reader B3-main, at %v, bits %v", s, start, tt.bits)
			}
			if !errors.Is(s.Err, tt.err) || (tt.err == nil && s.Err != nil) {
				t.Fatalf("swipe error %v, want %v", s.Err, tt.err)
			}
			if tt.err == nil && s.Credential.String() != tt.want {
				t.Errorf("credential %v, want %s", s.Credential, tt.want)
			}
		})
	}
}

func TestReaderConfig(t *testing.T) {
	p := gpiosim.New("p", gpio.High)
	tests := []struct {
		name   string
		mutate func(*wiegand.Config)
	}{
		{"empty name", func(c *wiegand.Config) { c.Name = "" }},
		{"zero gap", func(c *wiegand.Config) { c.Gap = 0 }},
		{"unknown pull", func(c *wiegand.Config) { c.Pull = 4 }},
	}
	for _, tt := range tests {
		cfg := wiegand.DefaultConfig("r")
		tt.mutate(&cfg)
		if _, err := wiegand.NewReader(p, p, cfg); !errors.Is(err, wiegand.ErrConfig) {
			t.Errorf("%s: NewReader = %v, want ErrConfig", tt.name, err)
		}
	}
	if _, err := wiegand.NewReader(nil, p, wiegand.DefaultConfig("r")); !errors.Is(err, wiegand.ErrConfig) {
		t.Errorf("nil pin: NewReader = %v, want ErrConfig", err)
	}
}
