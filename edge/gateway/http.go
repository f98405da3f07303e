package gateway

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"periph.io/x/conn/v3/gpio"

	"linli/firmware/wiegand"
	"linli/shared/httpx"
)

// decisionOut is the last decision at a door.
type decisionOut struct {
	N          uint64    `json:"n"` // counts the gateway's decisions: a script sees when a new one is made
	Result     string    `json:"result"`
	Credential string    `json:"credential,omitempty"` // the card's pseudonym
	Reason     string    `json:"reason,omitempty"`
	At         time.Time `json:"at"`
}

// doorOut is a door as GET /api/v1/doors shows it.
type doorOut struct {
	Door     string       `json:"door"`
	Open     bool         `json:"open"`     // the contact says open
	Relay    bool         `json:"relay"`    // the strike is released now
	Released bool         `json:"released"` // held released for a fire alarm
	Escape   bool         `json:"escape"`
	Fallback Fallback     `json:"fallback"`
	Reader   string       `json:"reader,omitempty"`
	Last     *decisionOut `json:"last,omitempty"`
}

// listOut is the access list in force as GET /api/v1/access-list shows it.
type listOut struct {
	Building  string         `json:"building"`
	Present   bool           `json:"present"`
	Issued    *time.Time     `json:"issued,omitempty"`
	Confirmed *time.Time     `json:"confirmed,omitempty"`
	AgeSec    float64        `json:"age_seconds"`
	Stale     bool           `json:"stale"`
	MaxAge    string         `json:"max_age"`
	Doors     map[string]int `json:"doors"` // cards per door
	Refused   uint64         `json:"refused"`
}

type alarmOut struct {
	Sensor string    `json:"sensor"`
	Kind   string    `json:"kind"`
	Since  time.Time `json:"since"`
	Value  float64   `json:"value,omitempty"`
	Place  string    `json:"place,omitempty"`
}

// Doors lists the doors with their contact, strike and last decision.
func (g *Gateway) Doors() []doorOut {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []doorOut{}
	for _, name := range slices.Sorted(maps.Keys(g.doorCfg)) {
		dc, d := g.doorCfg[name], g.doors[name]
		o := doorOut{Door: name, Open: d.Open(), Released: d.Holding(), Escape: dc.Escape, Fallback: dc.Fallback, Reader: dc.Reader}
		if g.dev != nil {
			if r := g.dev.strikes[name]; r != nil {
				o.Relay = r.On()
			}
		}
		if l, ok := g.last[name]; ok {
			o.Last = &l
		}
		out = append(out, o)
	}
	return out
}

// ListState describes the access list in force now.
func (g *Gateway) ListState() listOut {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.access.State(g.opts.Now())
	out := listOut{Building: g.opts.Building, Present: st.Present, AgeSec: st.Age.Seconds(), Stale: st.Stale,
		MaxAge: g.cfg.AccessMaxAge.String(), Doors: map[string]int{}, Refused: g.counts.listsRefused}
	if l, ok := g.access.List(); ok {
		out.Doors = l.Cards()
		out.Issued, out.Confirmed = &st.Issued, &st.Confirmed
	}
	return out
}

// CardKey is the site's card key from the access list in force (nil
// before the first list): what the edge's HTTP API hashes a posted card
// with, so a card named in a posted access event gets the same pseudonym
// as when this gateway's reader reads it.
func (g *Gateway) CardKey() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.access.Key()
}

// Alarms lists the alarms in force.
func (g *Gateway) Alarms() []alarmOut {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []alarmOut{}
	for _, a := range g.fire.Active() {
		out = append(out, alarmOut{Sensor: a.Sensor, Kind: a.Kind, Since: a.Since, Value: a.Value, Place: g.cfg.Places[a.Sensor]})
	}
	return out
}

// Routes serves the gateway's reads (and, on the simulator, its controls)
// and hands everything else to next:
//
//	GET /api/v1/doors         doors: contact, strike relay, fire release, last decision
//	GET /api/v1/access-list   the list in force: issued, confirmed, age, stale, cards per door
//	GET /api/v1/alarms        alarms in force at this gateway
//	GET /api/v1/sensors       the sensors' last values and errors
//	POST /api/v1/sim/swipe    {"reader","card"} or {"reader","bits"}: simulator only
//	POST /api/v1/sim/door     {"door","state":"open"|"closed"}: simulator only
//	POST /api/v1/sim/contact  {"sensor","state":"alarm"|"clear"}: simulator only
func (g *Gateway) Routes(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	get := func(pattern string, f func() any) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { httpx.WriteJSON(w, http.StatusOK, f()) })
	}
	get("GET /api/v1/doors", func() any { return g.Doors() })
	get("GET /api/v1/access-list", func() any { return g.ListState() })
	get("GET /api/v1/alarms", func() any { return g.Alarms() })
	get("GET /api/v1/sensors", func() any { return g.Sensors() })
	if g.dev != nil && g.dev.sim != nil {
		post := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
			mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
				if err := h(w, r); err != nil {
					httpx.WriteError(w, err)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			})
		}
		post("POST /api/v1/sim/swipe", g.simSwipe)
		post("POST /api/v1/sim/door", g.simDoor)
		post("POST /api/v1/sim/contact", g.simContact)
	}
	mux.Handle("/", next)
	return mux
}

// Sensors lists the sensors with their last values.
func (g *Gateway) Sensors() []sensorStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []sensorStatus{}
	for _, name := range slices.Sorted(maps.Keys(g.sensors)) {
		out = append(out, *g.sensors[name])
	}
	return out
}

// drive sets a simulated line, waiting (bounded) for its driver to take
// the edge.
func (g *Gateway) drive(ctx context.Context, line string, l gpio.Level) error {
	p, err := g.dev.sim.Pin(line)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Drive(ctx, l); err != nil {
		return fmt.Errorf("drive %s: %w", line, err)
	}
	return nil
}

func (g *Gateway) simSwipe(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Reader string `json:"reader"`
		Card   string `json:"card"`
		Bits   string `json:"bits"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	var rc *ReaderConfig
	for i := range g.cfg.Readers {
		if g.cfg.Readers[i].Name == req.Reader {
			rc = &g.cfg.Readers[i]
		}
	}
	if rc == nil {
		return httpx.BadRequest("reader", "no reader %q", req.Reader)
	}
	var bits []byte
	switch {
	case req.Card != "" && req.Bits == "":
		c, err := wiegand.ParseCredential(req.Card)
		if err != nil {
			return httpx.BadRequest("card", "%v", err)
		}
		if bits, err = wiegand.Encode(c); err != nil {
			return httpx.BadRequest("card", "%v", err)
		}
	case req.Bits != "" && req.Card == "" && len(req.Bits) <= 64:
		for _, b := range req.Bits {
			if b != '0' && b != '1' {
				return httpx.BadRequest("bits", "bits must be 0s and 1s")
			}
			bits = append(bits, byte(b-'0'))
		}
	default:
		return httpx.BadRequest("card", "give either card (such as 26:123:45678) or bits (up to 64 0s and 1s)")
	}
	// A Wiegand bit is a low pulse on D0 (0) or D1 (1).
	for _, b := range bits {
		line := rc.D0
		if b == 1 {
			line = rc.D1
		}
		if err := g.drive(r.Context(), line, gpio.Low); err != nil {
			return err
		}
		if err := g.drive(r.Context(), line, gpio.High); err != nil {
			return err
		}
	}
	return nil
}

func (g *Gateway) simDoor(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Door  string `json:"door"`
		State string `json:"state"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	dc, ok := g.doorCfg[req.Door]
	if !ok {
		return httpx.BadRequest("door", "no door %q", req.Door)
	}
	if req.State != "open" && req.State != "closed" {
		return httpx.BadRequest("state", "state must be open or closed")
	}
	l := level(dc.OpenLevel)
	if req.State == "closed" {
		l = !l
	}
	return g.drive(r.Context(), dc.Contact, l)
}

func (g *Gateway) simContact(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Sensor string `json:"sensor"`
		State  string `json:"state"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	var sc *SensorConfig
	for i := range g.cfg.Sensors {
		if s := &g.cfg.Sensors[i]; s.Name == req.Sensor && s.Pin != "" {
			sc = s
		}
	}
	if sc == nil {
		return httpx.BadRequest("sensor", "no smoke or water sensor %q", req.Sensor)
	}
	if req.State != "alarm" && req.State != "clear" {
		return httpx.BadRequest("state", "state must be alarm or clear")
	}
	l := level(sc.AlarmLevel)
	if req.State == "clear" {
		l = !l
	}
	return g.drive(r.Context(), sc.Pin, l)
}

func (g *Gateway) registerMetrics(reg *prometheus.Registry) {
	reg.MustRegister(g.metrics)
	read := func(f func() float64) func() float64 {
		return func() float64 { g.mu.Lock(); defer g.mu.Unlock(); return f() }
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, read(f)))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, read(f)))
	}
	gauge("linli_gateway_alarms_active", "Alarms in force at this gateway.", func() float64 { return float64(len(g.fire.active)) })
	gauge("linli_gateway_escape_released", "1 while escape doors are released for a fire alarm.", func() float64 {
		if g.releasing {
			return 1
		}
		return 0
	})
	gauge("linli_gateway_access_list_age_seconds", "Age of the access list in force since the hub last confirmed it (-1 without a list).", func() float64 {
		st := g.access.State(g.opts.Now())
		if !st.Present {
			return -1
		}
		return st.Age.Seconds()
	})
	gauge("linli_gateway_access_list_stale", "1 while the access list is older than access-max-age: doors follow their fallback.", func() float64 {
		if g.access.State(g.opts.Now()).Stale {
			return 1
		}
		return 0
	})
	counter("linli_gateway_access_lists_refused_total", "Access lists refused (malformed or for another building).", func() float64 { return float64(g.counts.listsRefused) })
	counter("linli_gateway_sensor_errors_total", "Sensor reads that failed (CRC, no device).", func() float64 { return float64(g.counts.sensorErrors) })
	counter("linli_gateway_write_errors_total", "Gateway events the outbox refused.", func() float64 { return float64(g.counts.writeErrors) })
	counter("linli_gateway_relay_errors_total", "Strike relay operations that failed.", func() float64 { return float64(g.counts.relayErrors) })
}
