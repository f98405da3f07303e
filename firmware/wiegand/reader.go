package wiegand

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// ErrConfig is wrapped by every configuration error; the message names the field.
var ErrConfig = errors.New("wiegand: invalid config")

// maxWait bounds each WaitForEdge so that a cancelled context is noticed within it: the
// periph fakes cannot be interrupted, and on gpioioctl lines a zero timeout means forever.
const maxWait = 50 * time.Millisecond

// Swipe is one frame read from a reader: a credential, or a bad read.
type Swipe struct {
	// Reader is Config.Name of the reader.
	Reader string
	// At is when the first bit arrived.
	At time.Time
	// Bits is the raw frame, one element per bit, for logs.
	Bits []byte
	// Credential is the card read; meaningful only when Err is nil.
	Credential Credential
	// Err is nil for a good read, else it wraps ErrFrameLength or ErrParity.
	Err error
}

// Config configures a Reader. Start from DefaultConfig.
type Config struct {
	// Name identifies the reader in swipes, e.g. "B3-main".
	Name string
	// Gap is the silence that ends a frame. Readers send a bit every 1-2 ms, so 25 ms is
	// far longer than any gap inside a frame and far shorter than between two cards.
	Gap time.Duration
	// Pull is the pull resistor of both inputs; the lines idle high.
	Pull gpio.Pull
	// Now is the clock; nil means time.Now. The simulator passes its own.
	Now func() time.Time
}

// DefaultConfig returns the usual settings for a reader called name.
func DefaultConfig(name string) Config {
	return Config{Name: name, Gap: 25 * time.Millisecond, Pull: gpio.PullUp}
}

// Validate reports the first bad field, wrapping ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: Name is empty", ErrConfig)
	case c.Gap <= 0:
		return fmt.Errorf("%w: Gap %v is not positive", ErrConfig, c.Gap)
	case c.Pull > gpio.PullUp:
		return fmt.Errorf("%w: Pull %d is unknown", ErrConfig, c.Pull)
	}
	return nil
}

// Reader is a Wiegand card reader: a low pulse on D0 is a 0 bit, on D1 a 1 bit.
type Reader struct {
	d0, d1 gpio.PinIn
	cfg    Config
}

// NewReader returns a Reader on lines d0 and d1, or an error wrapping ErrConfig.
func NewReader(d0, d1 gpio.PinIn, cfg Config) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d0 == nil || d1 == nil {
		return nil, fmt.Errorf("%w: nil pin", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reader{d0: d0, d1: d1, cfg: cfg}, nil
}

type timedBit struct {
	bit byte
	at  time.Time
}

// Run reads frames and sends one Swipe per frame to out until ctx is done, then returns
// nil. Bad reads are sent too, with Err set, so that the gateway can count them. Run
// blocks while out is full; it never closes out. It returns an error only if a pin
// cannot be set up.
//
// Each line is watched by its own goroutine, which relies on the pulse spacing of real
// readers (about 2 ms) to deliver bits in order; both goroutines end before Run returns.
func (r *Reader) Run(ctx context.Context, out chan<- Swipe) error {
	for _, p := range []gpio.PinIn{r.d0, r.d1} {
		// Falling edges only: a pulse is 50-100 µs, too short to read the level after.
		if err := p.In(r.cfg.Pull, gpio.FallingEdge); err != nil {
			return fmt.Errorf("wiegand %s: configure %s: %w", r.cfg.Name, p, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	bits := make(chan timedBit)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for bit, p := range []gpio.PinIn{r.d0, r.d1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.watch(ctx, p, byte(bit), bits)
		}()
	}

	framer := NewFramer(r.cfg.Gap)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var wake <-chan time.Time
		if deadline, ok := framer.Deadline(); ok {
			timer.Reset(max(deadline.Sub(r.cfg.Now()), time.Millisecond))
			wake = timer.C
		}
		var (
			frame Frame
			done  bool
		)
		select {
		case <-ctx.Done():
			return nil
		case b := <-bits:
			frame, done = framer.Add(b.bit, b.at)
		case <-wake:
			frame, done = framer.Flush(r.cfg.Now())
		}
		if !done {
			continue
		}
		s := Swipe{Reader: r.cfg.Name, At: frame.At, Bits: frame.Bits}
		s.Credential, s.Err = Decode(frame.Bits)
		select {
		case out <- s:
		case <-ctx.Done():
			return nil
		}
	}
}

// watch turns the edges of one line into bits, stamped when seen: the stamp must not
// wait for the hand-over, or a slow hand-over would look like a gap.
func (r *Reader) watch(ctx context.Context, p gpio.PinIn, bit byte, bits chan<- timedBit) {
	for ctx.Err() == nil {
		if !p.WaitForEdge(maxWait) {
			continue
		}
		select {
		case bits <- timedBit{bit: bit, at: r.cfg.Now()}:
		case <-ctx.Done():
			return
		}
	}
}
