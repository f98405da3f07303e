// Package sim simulates a gateway's hardware from a scenario file: card swipes as Wiegand pulse trains, doors, alarm contacts and SHT3x sensors, behind the same periph interfaces as real hardware.
package sim

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"

	"linli/firmware/board"
	"linli/firmware/gpiosim"
	"linli/firmware/sht3x"
)

// Sim is the simulated hardware of one gateway. It implements board.Hardware; Run plays
// the scenario on it.
type Sim struct {
	sc      *Scenario
	log     *slog.Logger
	clock   *clock
	pins    map[string]*gpiosim.Pin
	outputs map[string]bool
	buses   map[string]*Bus

	doors    map[string]Door
	readers  map[string]Reader
	contacts map[string]Contact
	sensors  map[string]Sensor
}

var _ board.Hardware = (*Sim)(nil)

// New builds the simulated hardware of sc: every declared line at rest (doors closed,
// contacts clear, reader lines idle high), every sensor at its initial values. Its clock
// reads time.Now() and stands still until Run. log may be nil.
func New(sc *Scenario, log *slog.Logger) (*Sim, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	speed := sc.Speed
	if speed == 0 {
		speed = 1
	}
	s := &Sim{
		sc:       sc,
		log:      log,
		clock:    &clock{epoch: time.Now(), speed: speed, limit: -1, realNow: time.Now},
		pins:     map[string]*gpiosim.Pin{},
		outputs:  map[string]bool{},
		buses:    map[string]*Bus{},
		doors:    map[string]Door{},
		readers:  map[string]Reader{},
		contacts: map[string]Contact{},
		sensors:  map[string]Sensor{},
	}
	for _, d := range sc.Doors {
		s.doors[d.Name] = d
		s.pins[d.Pin] = gpiosim.New(d.Pin, !d.OpenLevel.level())
	}
	for _, r := range sc.Readers {
		s.readers[r.Name] = r
		s.pins[r.D0] = gpiosim.New(r.D0, gpio.High)
		s.pins[r.D1] = gpiosim.New(r.D1, gpio.High)
	}
	for _, c := range sc.Contacts {
		s.contacts[c.Name] = c
		s.pins[c.Pin] = gpiosim.New(c.Pin, !c.AlarmLevel.level())
	}
	for _, o := range sc.Outputs {
		s.outputs[o] = true
		s.pins[o] = gpiosim.New(o, gpio.Low)
	}
	for _, sn := range sc.Sensors {
		s.sensors[sn.Name] = sn
		bus, ok := s.buses[sn.Bus]
		if !ok {
			bus = newBus(sn.Bus)
			s.buses[sn.Bus] = bus
		}
		bus.sensors[sn.addr()] = &simSensor{reading: sht3x.Reading{Temperature: sn.Temperature, Humidity: sn.Humidity}}
	}
	return s, nil
}

// Now implements board.Hardware: the simulation's clock. Give it to the drivers.
func (s *Sim) Now() time.Time { return s.clock.Now() }

// Pin returns the simulated line called name, to drive or inspect it from tests.
func (s *Sim) Pin(name string) (*gpiosim.Pin, error) {
	p, ok := s.pins[name]
	if !ok {
		return nil, fmt.Errorf("%w: sim has no line %q", board.ErrNotFound, name)
	}
	return p, nil
}

// PinIn implements board.Hardware for the door, reader and contact lines.
func (s *Sim) PinIn(name string) (gpio.PinIn, error) {
	if s.outputs[name] {
		return nil, fmt.Errorf("sim: line %q is an output", name)
	}
	return s.Pin(name)
}

// PinOut implements board.Hardware for the lines under outputs.
func (s *Sim) PinOut(name string) (gpio.PinOut, error) {
	p, err := s.Pin(name)
	if err == nil && !s.outputs[name] {
		return nil, fmt.Errorf("sim: line %q is an input", name)
	}
	return p, err
}

// I2C implements board.Hardware.
func (s *Sim) I2C(name string) (i2c.BusCloser, error) {
	b, err := s.Bus(name)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Bus returns the simulated bus called name, to inspect it from tests.
func (s *Sim) Bus(name string) (*Bus, error) {
	b, ok := s.buses[name]
	if !ok {
		return nil, fmt.Errorf("%w: sim has no I²C bus %q", board.ErrNotFound, name)
	}
	return b, nil
}

// action is something the simulation does at a simulated time.
type action struct {
	at   time.Duration
	seq  int // ties keep the order of scheduling
	name string
	do   func(ctx context.Context) error
}

type queue []action

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	return q[i].at < q[j].at || (q[i].at == q[j].at && q[i].seq < q[j].seq)
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(action)) }
func (q *queue) Pop() any {
	old := *q
	a := old[len(old)-1]
	*q = old[:len(old)-1]
	return a
}

// run is the state of one Run: only its goroutine touches it.
type run struct {
	*Sim
	q   queue
	seq int
	rng *rand.Rand
	now time.Duration // simulated time of the action running
}

func (r *run) schedule(at time.Duration, name string, do func(context.Context) error) {
	r.seq++
	heap.Push(&r.q, action{at: at, seq: r.seq, name: name, do: do})
}

// Run plays the scenario until it ends (see Scenario.Duration) or ctx is done, and
// returns nil then; the clock goes on running afterwards. It returns an error only if a
// simulated device fails. Call it once, after the drivers have started: a driver that
// has not configured its line yet misses the edges, as on real hardware.
//
// Drives wait for the driver of a line to take each edge (see gpiosim), so a driver that
// stops reading slows the simulation down instead of losing edges.
func (s *Sim) Run(ctx context.Context) error {
	r := &run{Sim: s, rng: rand.New(rand.NewPCG(s.sc.Seed, s.sc.Seed^0x9e3779b97f4a7c15))}
	for _, st := range s.sc.Steps {
		name, do, err := r.step(st)
		if err != nil {
			return fmt.Errorf("sim: %s: %w", name, err)
		}
		r.schedule(time.Duration(st.At), name, do)
	}
	for _, g := range s.sc.Generators {
		first := time.Duration(g.Start) + time.Duration(r.rng.Int64N(int64(g.Every)))
		r.schedule(first, "generator", r.generator(g))
	}
	end := time.Duration(s.sc.Duration)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if len(r.q) == 0 || end > 0 && r.q[0].at > end {
			// Nothing more to do: run to the end, if any, then let time flow freely.
			if end > 0 {
				if r.wait(ctx, timer, end) != nil {
					return nil
				}
				s.clock.stop(end)
			}
			s.clock.start(-1)
			return nil
		}
		next := heap.Pop(&r.q).(action)
		if r.wait(ctx, timer, next.at) != nil {
			return nil
		}
		s.clock.stop(next.at)
		r.now = next.at
		s.log.Info("sim action", "at", next.at, "what", next.name)
		if err := next.do(ctx); err != nil {
			s.clock.start(-1)
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sim: %s at %v: %w", next.name, next.at, err)
		}
	}
}

// wait runs the clock up to simulated time limit and waits until it gets there.
func (r *run) wait(ctx context.Context, timer *time.Timer, limit time.Duration) error {
	d := r.clock.start(limit)
	if d < 100*time.Microsecond {
		// Below timer resolution (a fast run): go on at once, the clock jumps to limit.
		return ctx.Err()
	}
	timer.Reset(d)
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		r.clock.start(-1)
		return ctx.Err()
	}
}

// step returns the action of a scripted step.
// Validate has checked the step, so errors here are not expected.
func (r *run) step(st Step) (string, func(context.Context) error, error) {
	switch {
	case st.Swipe != nil:
		name := "swipe " + st.Swipe.Card + " at " + st.Swipe.Reader
		bits, err := cardBits(st.Swipe.Card)
		return name, r.swipe(st.Swipe.Reader, bits), err
	case st.Bits != nil:
		name := "bits " + st.Bits.Frame + " at " + st.Bits.Reader
		bits, err := frameBits(st.Bits.Frame)
		return name, r.swipe(st.Bits.Reader, bits), err
	case st.Door != nil:
		return "door " + st.Door.Name + " " + st.Door.State, r.door(st.Door.Name, st.Door.State == "open"), nil
	case st.Contact != nil:
		return "contact " + st.Contact.Name + " " + st.Contact.State, r.contact(st.Contact.Name, st.Contact.State == "alarm"), nil
	default:
		cl := *st.Climate
		sn := r.sensors[cl.Sensor]
		return "climate " + cl.Sensor, func(context.Context) error {
			r.buses[sn.Bus].update(sn.addr(), func(rd *sht3x.Reading) {
				if cl.Temperature != nil {
					rd.Temperature = *cl.Temperature
				}
				if cl.Humidity != nil {
					rd.Humidity = *cl.Humidity
				}
			})
			return nil
		}, nil
	}
}

// swipe pulses a frame on a reader's lines: each bit a low pulse on D0 (0) or D1 (1).
func (r *run) swipe(reader string, bits []byte) func(context.Context) error {
	rd := r.readers[reader]
	return func(ctx context.Context) error {
		for _, b := range bits {
			line := r.pins[rd.D0]
			if b == 1 {
				line = r.pins[rd.D1]
			}
			if err := line.Drive(ctx, gpio.Low); err != nil {
				return err
			}
			if err := line.Drive(ctx, gpio.High); err != nil {
				return err
			}
		}
		return nil
	}
}

func (r *run) door(name string, open bool) func(context.Context) error {
	d := r.doors[name]
	level := d.OpenLevel.level()
	if !open {
		level = !level
	}
	return func(ctx context.Context) error { return r.pins[d.Pin].Drive(ctx, level) }
}

func (r *run) contact(name string, alarm bool) func(context.Context) error {
	c := r.contacts[name]
	level := c.AlarmLevel.level()
	if !alarm {
		level = !level
	}
	return func(ctx context.Context) error { return r.pins[c.Pin].Drive(ctx, level) }
}

// generator returns the action of one firing of g: it schedules g's activity and the
// next firing. All randomness is drawn here, on Run's goroutine, in the order of the
// simulated timeline, so a seed gives the same run every time.
func (r *run) generator(g Generator) func(context.Context) error {
	var fire func(context.Context) error
	fire = func(context.Context) error {
		now := r.now
		switch {
		case g.Visit != nil:
			if err := r.visit(now, g.Visit); err != nil {
				return err
			}
		case g.Drift != nil:
			r.drift(g.Drift)
		case g.Alarm != nil:
			r.schedule(now, "alarm "+g.Alarm.Contact, r.contact(g.Alarm.Contact, true))
			r.schedule(now+time.Duration(g.Alarm.For), "clear "+g.Alarm.Contact, r.contact(g.Alarm.Contact, false))
		}
		period := time.Duration(g.Every)
		if g.Jitter > 0 {
			period += time.Duration(r.rng.Int64N(2*int64(g.Jitter)+1)) - time.Duration(g.Jitter)
		}
		r.schedule(now+period, "generator", fire)
		return nil
	}
	return fire
}

func (r *run) visit(now time.Duration, v *Visit) error {
	if v.Reader != "" {
		card := v.Cards[r.rng.IntN(len(v.Cards))]
		bits, err := cardBits(card) // checked by Validate, so not expected to fail
		if err != nil {
			return err
		}
		r.schedule(now, "swipe "+card+" at "+v.Reader, r.swipe(v.Reader, bits))
	}
	if v.Door == "" {
		return nil
	}
	hold := time.Duration(v.Hold)
	if v.HeldOpenChance > 0 && r.rng.Float64() < v.HeldOpenChance {
		hold = time.Duration(v.HeldOpenHold)
	}
	open := now + time.Duration(v.OpenAfter)
	r.schedule(open, "door "+v.Door+" open", r.door(v.Door, true))
	r.schedule(open+hold, "door "+v.Door+" closed", r.door(v.Door, false))
	return nil
}

func (r *run) drift(d *Drift) {
	sn := r.sensors[d.Sensor]
	dt := (2*r.rng.Float64() - 1) * d.Temperature
	dh := (2*r.rng.Float64() - 1) * d.Humidity
	r.buses[sn.Bus].update(sn.addr(), func(rd *sht3x.Reading) {
		rd.Temperature = min(max(rd.Temperature+dt, -45), 130)
		rd.Humidity = min(max(rd.Humidity+dh, 0), 100)
	})
}
