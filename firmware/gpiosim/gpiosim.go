// Package gpiosim is a simulated GPIO line on top of periph's gpiotest fake, with the edge semantics of a real line and a hand-off that keeps edges in order.
//
// gpiotest.Pin alone is not enough to drive real drivers from outside: its In resets the
// level from the pull (a closed contact would read as open), every value sent on its
// EdgesChan is an edge whatever the driver asked for, and nothing tells the sender that a
// driver has dealt with an edge. The last point matters for a Wiegand reader watching two
// lines from two goroutines: real pulses are milliseconds apart, fakes are not, so without
// a hand-off the bits of D0 and D1 reach the decoder out of order.
package gpiosim

import (
	"context"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// Pin is a simulated line. Drivers use it through gpio.PinIn or gpio.PinOut; the
// simulation sets its level with Drive and reads outputs with Read.
//
// Do not send on the embedded EdgesChan directly: Drive does it with the hand-off.
type Pin struct {
	*gpiotest.Pin

	drive sync.Mutex // one Drive at a time, so each edge is awaited on its own

	mu       sync.Mutex
	edge     gpio.Edge     // what the consumer asked for in In
	level    gpio.Level    // what the outside world drives
	waits    uint64        // WaitForEdge calls
	received uint64        // edges taken by WaitForEdge
	acked    uint64        // received as of the consumer's latest WaitForEdge call
	changed  chan struct{} // closed and replaced when acked moves
}

// New returns a line called name that reads level until driven otherwise.
func New(name string, level gpio.Level) *Pin {
	return &Pin{
		Pin: &gpiotest.Pin{
			N: name,
			// Set up front: gpiotest sets a nil Clock lazily inside WaitForEdge, a race.
			Clock: clockwork.NewRealClock(),
			L:     level,
			// Unbuffered, so a send completes only when a WaitForEdge takes the edge.
			EdgesChan: make(chan gpio.Level),
		},
		level:   level,
		changed: make(chan struct{}),
	}
}

// In implements gpio.PinIn. It records which edges the consumer wants and keeps the
// driven level: a contact pulling the line low wins over an internal pull-up.
func (p *Pin) In(pull gpio.Pull, edge gpio.Edge) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.Pin.In(pull, edge); err != nil {
		return err
	}
	p.edge = edge
	return p.Pin.Out(p.level)
}

// WaitForEdge implements gpio.PinIn. Calling it again tells Drive that the consumer is
// done with the previous edge.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	p.mu.Lock()
	p.waits++
	if p.acked != p.received {
		p.acked = p.received
		close(p.changed)
		p.changed = make(chan struct{})
	}
	p.mu.Unlock()
	if !p.Pin.WaitForEdge(timeout) {
		return false
	}
	p.mu.Lock()
	p.received++
	p.mu.Unlock()
	return true
}

// Edge returns the edge detection the consumer configured with In; gpio.NoEdge until then.
func (p *Pin) Edge() gpio.Edge {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.edge
}

// Listening reports whether a consumer has configured edge detection and has started
// waiting for edges: from then on it has read the line's initial level, and Drive hands
// edges over to it.
func (p *Pin) Listening() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.edge != gpio.NoEdge && p.waits > 0
}

// Drive sets the level of the line. When the change is an edge the consumer listens for,
// Drive hands it over and returns only once the consumer has processed it (it has come
// back to WaitForEdge), or when ctx is done.
func (p *Pin) Drive(ctx context.Context, level gpio.Level) error {
	p.drive.Lock()
	defer p.drive.Unlock()

	p.mu.Lock()
	prev, edge := p.level, p.edge
	p.level = level
	target := p.received + 1 // only Drive sends, so the next edge taken is ours
	err := p.Pin.Out(level)
	p.mu.Unlock()
	if err != nil || !wanted(edge, prev, level) {
		return err
	}

	select {
	case p.EdgesChan <- level:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		p.mu.Lock()
		done, changed := p.acked >= target, p.changed
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wanted reports whether a change from prev to next is an edge of kind edge.
func wanted(edge gpio.Edge, prev, next gpio.Level) bool {
	switch {
	case prev == next:
		return false
	case edge == gpio.BothEdges:
		return true
	case edge == gpio.RisingEdge:
		return next == gpio.High
	case edge == gpio.FallingEdge:
		return next == gpio.Low
	}
	return false
}
