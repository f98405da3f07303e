// Package gateway turns a building's door, card-reader and sensor signals into events: access decided locally and at once from the hub's access list, fire and water alarms sent ahead of any backlog with escape doors released, and telemetry recorded on change.
//
// The rules (Access, Door, Fire, Telemetry) are pure: they take driver
// signals with their times and return what to record, so they are
// table-tested without hardware or clocks. Gateway is the thin I/O around
// them: it runs the firmware drivers on a board.Hardware (the simulator or
// real pins), feeds the rules, pulses and holds the strike relays, and
// writes what the rules return to the outbox, alarms first.
package gateway

import "linli/shared/event"

// Record is an event the rules ask the gateway to record. Priority events
// (alarms, forced doors) also go to the hub at once, ahead of any backlog.
type Record struct {
	Body     event.Body
	Priority bool
}
