package gateway

import (
	"context"
	"fmt"
	"time"

	"linli/firmware/relay"
	"linli/shared/event"
)

// Reading applies a reading posted over HTTP (a sensor bridge, a
// third-party detector) to the same rules as a wired sensor: smoke or
// water at 1 raises the alarm and 0 clears it; a temperature at or above
// the heat threshold raises a heat alarm and one below threshold minus
// hysteresis clears it. The alarm is recorded and sent to the hub ahead of
// any backlog, and escape doors are released, before the reading itself is
// recorded; the reading's event is returned once it is durable. A
// *event.FieldError means bad input and nothing recorded.
func (g *Gateway) Reading(ctx context.Context, r *event.Reading) (event.Event, error) {
	if r.Building == "" {
		r.Building = g.opts.Building
	}
	if err := r.Validate(); err != nil {
		return event.Event{}, err
	}
	// One posted reading at a time from decision to disk: a raise and the
	// clear right after it must reach the outbox in that order.
	g.httpMu.Lock()
	defer g.httpMu.Unlock()
	g.mu.Lock()
	at := g.clock()
	var recs []Record
	switch r.Type {
	case AlarmSmoke, AlarmWater:
		recs = g.fire.Contact(r.Sensor, r.Type, r.Value >= 1, at)
	case "temperature":
		recs = g.fire.Temperature(r.Sensor, r.Value, at)
	}
	recs = g.note(append(recs, g.applyRelease(at)...), at)
	g.mu.Unlock()
	for _, rec := range recs {
		ev, err := g.write(ctx, rec)
		if err != nil {
			if a, ok := rec.Body.(*event.Alarm); ok {
				// Not recorded, so not known: the sender's retry must raise
				// it again. Escape doors stay as the rules left them.
				g.mu.Lock()
				g.fire.Undo(a, at)
				g.mu.Unlock()
			}
			return event.Event{}, fmt.Errorf("record %s: %w", rec.Body.Kind(), err)
		}
		if rec.Priority && g.opts.Uplink != nil {
			g.opts.Uplink.SendPriority(ev)
		}
	}
	return g.opts.Log.Append(ctx, r)
}

// clock is the time the rules run on: the hardware's clock (the
// simulator's, under test) or, without hardware, the wall clock.
func (g *Gateway) clock() time.Time {
	if g.dev != nil {
		return g.dev.hw.Now()
	}
	return g.opts.Now()
}

// strike is a door's strike relay, nil without one (or without hardware).
func (g *Gateway) strike(door string) *relay.Relay {
	if g.dev == nil {
		return nil
	}
	return g.dev.strikes[door]
}
