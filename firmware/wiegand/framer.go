package wiegand

import "time"

// MaxFrameBits caps the bits kept for one frame: a burst longer than any known format is
// noise, and the cap bounds memory. A capped frame still fails Decode with ErrFrameLength.
const MaxFrameBits = 64

// Frame is a burst of bits with no gap longer than the inter-bit timeout.
type Frame struct {
	// Bits holds one element (0 or 1) per bit, at most MaxFrameBits+1 of them.
	Bits []byte
	// At is when the first bit arrived.
	At time.Time
}

// Framer splits a stream of timed bits into frames: a frame ends when no bit has come for
// the gap timeout. It is pure: bits and time are fed by the caller.
type Framer struct {
	gap         time.Duration
	bits        []byte
	first, last time.Time
}

// NewFramer returns a Framer ending frames after gap without bits.
func NewFramer(gap time.Duration) *Framer { return &Framer{gap: gap} }

// Add feeds a bit (0 or 1) that arrived at now. If the gap had passed since the previous
// bit, that earlier frame is complete and returned (ok true) before now's bit starts a
// new one.
func (f *Framer) Add(bit byte, now time.Time) (done Frame, ok bool) {
	done, ok = f.Flush(now)
	if len(f.bits) == 0 {
		f.first = now
	}
	if len(f.bits) <= MaxFrameBits {
		f.bits = append(f.bits, bit)
	}
	f.last = now
	return done, ok
}

// Flush returns the frame being collected if the gap has passed at now.
func (f *Framer) Flush(now time.Time) (Frame, bool) {
	if len(f.bits) == 0 || now.Sub(f.last) < f.gap {
		return Frame{}, false
	}
	fr := Frame{Bits: f.bits, At: f.first}
	f.bits = nil
	return fr, true
}

// Deadline returns when the frame being collected ends if no bit comes; ok is false when
// there is none.
func (f *Framer) Deadline() (time.Time, bool) {
	if len(f.bits) == 0 {
		return time.Time{}, false
	}
	return f.last.Add(f.gap), true
}
