package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/goleak"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"linli/edge/outbox"
	"linli/firmware/sht3x"
	"linli/firmware/sim"
	"linli/firmware/wiegand"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/test/edgetest"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

// fakeSHT is an SHT3x on its own bus whose reading and CRC the test sets.
type fakeSHT struct {
	mu      sync.Mutex
	reading sht3x.Reading
	corrupt bool
	latched bool
}

func (f *fakeSHT) set(temp float64, corrupt bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reading.Temperature, f.corrupt = temp, corrupt
}

func (f *fakeSHT) Tx(addr uint16, w, r []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case addr == sht3x.DefaultAddr && len(r) == 0 && bytes.Equal(w, sht3x.CmdMeasure):
		f.latched = true
		return nil
	case addr == sht3x.DefaultAddr && len(w) == 0 && len(r) == 6 && f.latched:
		b := sht3x.Encode(f.reading)
		if f.corrupt {
			b[1] ^= 0x10 // noise on the bus: the temperature word no longer matches its CRC
		}
		copy(r, b[:])
		f.latched = false
		return nil
	}
	return fmt.Errorf("fake sht3x: no ACK from %#x", addr)
}
func (f *fakeSHT) SetSpeed(physic.Frequency) error { return nil }
func (f *fakeSHT) String() string                  { return "fake-i2c" }
func (f *fakeSHT) Close() error                    { return nil }

// rigHW is the simulator with the fake SHT3x on bus "env-bus".
type rigHW struct {
	*sim.Sim
	sht *fakeSHT
}

func (h rigHW) I2C(name string) (i2c.BusCloser, error) {
	if name == "env-bus" {
		return h.sht, nil
	}
	return h.Sim.I2C(name)
}

type fakeUplink struct {
	mu   sync.Mutex
	prio []event.Event
}

func (u *fakeUplink) SendPriority(ev event.Event) {
	u.mu.Lock()
	u.prio = append(u.prio, ev)
	u.mu.Unlock()
}
func (u *fakeUplink) Connected() bool     { return false }
func (u *fakeUplink) LastSync() time.Time { return time.Time{} }
func (u *fakeUplink) kinds() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, ev := range u.prio {
		out = append(out, render(decode(ev)))
	}
	return strings.Join(out, ", ")
}

func decode(ev event.Event) event.Body {
	b, err := ev.Decode()
	if err != nil {
		panic(err)
	}
	return b
}

type fakeReplica struct {
	mu    sync.Mutex
	hooks []func([]wire.Change)
}

func (r *fakeReplica) AfterApply(f func([]wire.Change)) {
	r.mu.Lock()
	r.hooks = append(r.hooks, f)
	r.mu.Unlock()
}
func (r *fakeReplica) Get(string, string) (wire.Change, bool, error) {
	return wire.Change{}, false, nil
}
func (r *fakeReplica) apply(cs ...wire.Change) {
	r.mu.Lock()
	hooks := r.hooks
	r.mu.Unlock()
	for _, h := range hooks {
		h(cs)
	}
}

const rigScenario = `
speed: 1
doors: [{name: D1, pin: d1-contact}, {name: D2, pin: d2-contact}]
readers: [{name: R1, d0: r1-d0, d1: r1-d1}]
contacts: [{name: smoke, pin: smoke-pin}, {name: water, pin: water-pin}]
outputs: [d1-strike, d2-strike]
`

func rigConfig() Config {
	return Config{
		AccessMaxAge: time.Hour, HeatThreshold: 57, HeatHyst: 2, Sample: 50 * time.Millisecond,
		DeadbandTemp: 0.5, DeadbandHum: 2, ForcedGrace: 150 * time.Millisecond,
		Doors: []DoorConfig{
			{Name: "D1", Contact: "d1-contact", Strike: "d1-strike", Reader: "R1", Unlock: 400 * time.Millisecond},
			{Name: "D2", Contact: "d2-contact", Strike: "d2-strike", Escape: true},
		},
		Readers: []ReaderConfig{{Name: "R1", D0: "r1-d0", D1: "r1-d1"}},
		Sensors: []SensorConfig{{Name: "smoke", Kind: SensorSmoke, Pin: "smoke-pin"}, {Name: "water", Kind: SensorWater, Pin: "water-pin"},
			{Name: "env", Kind: SensorSHT3x, Bus: "env-bus"}},
		Places: map[string]string{"bridge-smoke": "3号楼 1单元 楼道烟感", "D1": "3号楼 东门"},
	}
}

// rig is a gateway on the simulator with a real outbox.
type rig struct {
	ob   *outbox.Log
	up   *fakeUplink
	rep  *fakeReplica
	sim  *sim.Sim
	sht  *fakeSHT
	g    *Gateway
	stop func()
	mark int // events of the rig's checks so far (readings aside)
}

func startRig(t *testing.T, ob *outbox.Log, db *badger.DB) *rig {
	t.Helper()
	sc, err := sim.ParseScenario([]byte(rigScenario))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{ob: ob, up: &fakeUplink{}, rep: &fakeReplica{}, sim: s, sht: &fakeSHT{reading: sht3x.Reading{Temperature: 22.5, Humidity: 45}}}
	r.g, err = New(Options{Config: rigConfig(), Site: "S1", Building: "B3", Log: ob, DB: db, Uplink: r.up, Replica: r.rep,
		Hardware: rigHW{Sim: s, sht: r.sht}, Sim: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.g.Run(ctx) }()
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	}
	return r
}

func render(b event.Body) string {
	switch b := b.(type) {
	case *event.Access:
		return strings.TrimSpace("access " + b.Door + " " + b.Result + " " + b.Reason)
	case *event.Alarm:
		state := "off"
		if b.Active {
			state = "on"
		}
		return "alarm " + b.Sensor + " " + b.Type + " " + state
	case *event.Reading:
		return fmt.Sprintf("reading %s %s %v", b.Sensor, b.Type, b.Value)
	}
	return b.Kind().String()
}

// all returns every event recorded so far, decoded.
func (r *rig) all(t *testing.T) []event.Body {
	t.Helper()
	evs, err := r.ob.Read(0, 100000, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]event.Body, len(evs))
	for i := range evs {
		if out[i], err = evs[i].Decode(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// checks are the events that are not readings, rendered.
func (r *rig) checks(t *testing.T) []string {
	var out []string
	for _, b := range r.all(t) {
		if b.Kind() != event.KindReading {
			out = append(out, render(b))
		}
	}
	return out
}

// await waits until the events after the mark are exactly want, then
// moves the mark past them.
func (r *rig) await(t *testing.T, want ...string) {
	t.Helper()
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		got := r.checks(t)[r.mark:]
		if len(got) > len(want) {
			t.Fatalf("events %q, want %q", got, want)
		}
		return strings.Join(got, "; ") == strings.Join(want, "; "), fmt.Sprintf("events %q, want %q", got, want)
	})
	r.mark += len(want)
}

func (r *rig) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.WaitFor(t, what, cond)
}

func (r *rig) drive(t *testing.T, line string, l gpio.Level) {
	t.Helper()
	p, err := r.sim.Pin(line)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Drive(ctx, l); err != nil {
		t.Fatalf("drive %s: %v", line, err)
	}
}

func (r *rig) swipeBits(t *testing.T, bits []byte) {
	t.Helper()
	for _, b := range bits {
		line := "r1-d0"
		if b == 1 {
			line = "r1-d1"
		}
		r.drive(t, line, gpio.Low)
		r.drive(t, line, gpio.High)
	}
}

func (r *rig) swipe(t *testing.T, card string) {
	t.Helper()
	c, err := wiegand.ParseCredential(card)
	if err != nil {
		t.Fatal(err)
	}
	bits, err := wiegand.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	r.swipeBits(t, bits)
}

func (r *rig) door(t *testing.T, name string) doorOut {
	t.Helper()
	for _, d := range r.g.Doors() {
		if d.Door == name {
			return d
		}
	}
	t.Fatalf("no door %s", name)
	return doorOut{}
}

func (r *rig) waitListening(t *testing.T) {
	t.Helper()
	for _, line := range []string{"d1-contact", "d2-contact", "r1-d0", "r1-d1", "smoke-pin", "water-pin"} {
		p, err := r.sim.Pin(line)
		if err != nil {
			t.Fatal(err)
		}
		r.eventually(t, line+" listened to", p.Listening)
	}
}

func TestGatewayOnSimulator(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // last: after the store closes
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	r := startRig(t, ob, db)
	r.waitListening(t)

	key := bytes.Repeat([]byte{9}, accesslist.KeySize)
	list := accesslist.List{Site: "S1", Building: "B3", Issued: hlc.FromTime(time.Now()), Key: key,
		Doors: []accesslist.Door{{Name: "D1", Cards: [][]byte{accesslist.Hash(key, "26:123:45678")}}}}
	body, err := event.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no list yet: denied", func(t *testing.T) {
		r.swipe(t, "26:123:45678")
		r.await(t, "access D1 denied no_list")
	})
	t.Run("a list from the hub decides at once", func(t *testing.T) {
		other := list
		other.Building = "B4"
		otherBody, err := event.Marshal(other)
		if err != nil {
			t.Fatal(err)
		}
		r.rep.apply(wire.Change{Entity: wire.EntityAccessList, ID: "S1:B4", Body: otherBody}, // not ours: ignored
			wire.Change{Entity: wire.EntityAccessList, ID: "S1:B3", Body: body})
		if st := r.g.ListState(); !st.Present || st.Doors["D1"] != 1 || st.Stale {
			t.Fatalf("list state %+v", st)
		}
		r.swipe(t, "26:123:45678")
		r.await(t, "access D1 granted")
		r.eventually(t, "strike released", func() bool { return r.door(t, "D1").Relay })
		r.drive(t, "d1-contact", gpio.High)
		r.await(t, "access D1 open")
		r.drive(t, "d1-contact", gpio.Low)
		r.await(t, "access D1 close")
		r.eventually(t, "strike locked again after the unlock time", func() bool { return !r.door(t, "D1").Relay })
		bs := r.all(t)
		var granted *event.Access
		for _, b := range bs {
			if a, ok := b.(*event.Access); ok && a.Result == "granted" {
				granted = a
			}
		}
		if want := accesslist.Pseudonym(accesslist.Hash(key, "26:123:45678")); granted.Credential != want {
			t.Fatalf("credential %q, want the pseudonym %q", granted.Credential, want)
		}
		if d := r.door(t, "D1"); d.Last == nil || d.Last.Result != "granted" {
			t.Fatalf("door D1 %+v: want its last decision granted", d)
		}
	})
	t.Run("unknown cards and bad frames", func(t *testing.T) {
		r.swipe(t, "26:99:1")
		r.await(t, "access D1 denied not_listed")
		r.swipeBits(t, []byte{1, 0, 1, 1})
		r.await(t, "access D1 bad_read frame_length")
		bits, err := wiegand.Encode(wiegand.Credential{Format: 26, Facility: 123, Card: 45678})
		if err != nil {
			t.Fatal(err)
		}
		bits[0] ^= 1
		r.swipeBits(t, bits) // a listed card with a parity error is not a card
		r.await(t, "access D1 bad_read parity")
		if s := strings.Join(r.checks(t), " "); strings.Contains(s, "45678") {
			t.Fatalf("a card in clear: %s", s)
		}
	})
	t.Run("opened without a card: forced, sent first", func(t *testing.T) {
		r.drive(t, "d1-contact", gpio.High)
		r.await(t, "access D1 forced")
		r.drive(t, "d1-contact", gpio.Low)
		r.await(t, "access D1 close")
		r.eventually(t, "forced sent on the priority path", func() bool { return strings.Contains(r.up.kinds(), "access D1 forced") })
		for _, b := range r.all(t) {
			if a, ok := b.(*event.Access); ok && a.Door == "D1" {
				if want := map[bool]string{true: "3号楼 东门", false: ""}[a.Result == "forced"]; a.Place != want || a.Building != "B3" {
					t.Errorf("%s at D1: place %q building %q, want place %q (alarms only) and B3", a.Result, a.Place, a.Building, want)
				}
			}
		}
	})
	t.Run("a bounce is not a door event", func(t *testing.T) {
		r.drive(t, "d1-contact", gpio.High)
		r.drive(t, "d1-contact", gpio.Low) // well within the 50 ms debounce
		r.swipe(t, "26:99:1")
		r.await(t, "access D1 denied not_listed")
	})
	t.Run("smoke releases the escape door", func(t *testing.T) {
		r.drive(t, "smoke-pin", gpio.High)
		r.await(t, "alarm smoke smoke on")
		if d := r.door(t, "D2"); !d.Relay || !d.Released {
			t.Fatalf("escape door during the alarm: %+v", d)
		}
		if d := r.door(t, "D1"); d.Relay || d.Released {
			t.Fatalf("a door that is no escape route was released: %+v", d)
		}
		r.drive(t, "d2-contact", gpio.High) // people leave: not forced
		r.await(t, "access D2 open")
		r.drive(t, "d2-contact", gpio.Low)
		r.await(t, "access D2 close")
		r.drive(t, "smoke-pin", gpio.Low)
		r.await(t, "alarm smoke smoke off")
		if d := r.door(t, "D2"); d.Relay || d.Released {
			t.Fatalf("escape door after the alarm: %+v", d)
		}
		// The priority send follows the append that await saw stored.
		r.eventually(t, "both smoke alarms sent on the priority path", func() bool {
			return strings.Contains(r.up.kinds(), "alarm smoke smoke on, alarm smoke smoke off")
		})
	})
	t.Run("water alarms without releasing", func(t *testing.T) {
		r.drive(t, "water-pin", gpio.High)
		r.await(t, "alarm water water on")
		if d := r.door(t, "D2"); d.Relay {
			t.Fatal("a water leak released the escape door")
		}
		r.drive(t, "water-pin", gpio.Low)
		r.await(t, "alarm water water off")
	})
	t.Run("heat over the threshold, with hysteresis", func(t *testing.T) {
		r.sht.set(60, false)
		r.await(t, "alarm env heat on")
		r.eventually(t, "escape door released for heat", func() bool { return r.door(t, "D2").Relay })
		r.sht.set(56, false) // in the band: still hot
		r.eventually(t, "a 56 °C reading recorded", func() bool {
			for _, b := range r.all(t) {
				if rd, ok := b.(*event.Reading); ok && rd.Type == "temperature" && rd.Value == 56 {
					return true
				}
			}
			return false
		})
		if alarms := r.g.Alarms(); len(alarms) != 1 || alarms[0].Kind != "heat" {
			t.Fatalf("alarms in the band: %+v", alarms)
		}
		r.sht.set(50, false)
		r.await(t, "alarm env heat off")
		r.eventually(t, "escape door locked after the heat", func() bool { return !r.door(t, "D2").Relay })
	})
	t.Run("a reading posted over HTTP raises the same alarm", func(t *testing.T) {
		ctx := context.Background()
		tests := []struct {
			sensor, kind string
			on, band     float64 // band: a value that changes nothing
			off          float64
			alarm        string
			release      bool
		}{
			{"bridge-smoke", "smoke", 1, 1, 0, "smoke", true},
			{"bridge-water", "water", 1, 1, 0, "water", false},
			{"bridge-t", "temperature", 57, 55.5, 54.9, "heat", true},
		}
		for _, tt := range tests {
			post := func(v float64) {
				t.Helper()
				ev, err := r.g.Reading(ctx, &event.Reading{Sensor: tt.sensor, Type: tt.kind, Value: v})
				if err != nil || ev.Seq == 0 {
					t.Fatalf("%s %v: %v %+v", tt.sensor, v, err, ev)
				}
			}
			post(tt.on)
			r.await(t, "alarm "+tt.sensor+" "+tt.alarm+" on")
			if d := r.door(t, "D2"); d.Relay != tt.release || d.Released != tt.release {
				t.Fatalf("%s: escape door %+v, want released %v", tt.sensor, d, tt.release)
			}
			if !strings.Contains(r.up.kinds(), "alarm "+tt.sensor+" "+tt.alarm+" on") {
				t.Fatalf("%s: priority sends %q lack the alarm: it must not wait behind the backlog", tt.sensor, r.up.kinds())
			}
			post(tt.band)
			if alarms := r.g.Alarms(); len(alarms) != 1 || alarms[0].Sensor != tt.sensor {
				t.Fatalf("%s: alarms after %v: %+v", tt.sensor, tt.band, alarms)
			}
			post(tt.off)
			r.await(t, "alarm "+tt.sensor+" "+tt.alarm+" off")
			if d := r.door(t, "D2"); d.Relay || d.Released {
				t.Fatalf("%s: escape door after the clear: %+v", tt.sensor, d)
			}
		}
		var smoke *event.Alarm
		for _, b := range r.all(t) {
			if a, ok := b.(*event.Alarm); ok && a.Sensor == "bridge-smoke" && a.Active {
				smoke = a
			}
		}
		if smoke == nil || smoke.Building != "B3" || smoke.Place != "3号楼 1单元 楼道烟感" || smoke.Value != 1 {
			t.Fatalf("HTTP smoke alarm %+v, want building B3, its place and value 1", smoke)
		}
		if _, err := r.g.Reading(ctx, &event.Reading{Sensor: "bridge-smoke", Type: "smoke", Value: 2}); !errors.As(err, new(*event.FieldError)) {
			t.Fatalf("smoke value 2: %v, want a field error", err)
		}
	})
	t.Run("CRC errors are errors, not readings", func(t *testing.T) {
		readings := func() int {
			n := 0
			for _, b := range r.all(t) {
				if rd, ok := b.(*event.Reading); ok && rd.Sensor == "env" {
					n++
				}
			}
			return n
		}
		r.sht.set(30, true) // a move that would be recorded, but every read is corrupt
		r.eventually(t, "sensor errors counted", func() bool {
			for _, s := range r.g.Sensors() {
				if s.Sensor == "env" && s.Errors >= 3 && strings.Contains(s.Error, "CRC") {
					return true
				}
			}
			return false
		})
		before := readings()
		time.Sleep(200 * time.Millisecond) // several sample intervals of corrupt reads
		if after := readings(); after != before {
			t.Fatalf("readings went from %d to %d from corrupt frames", before, after)
		}
		r.sht.set(30, false)
		r.eventually(t, "readings again once the bus is clean", func() bool { return readings() > before })
	})
	t.Run("telemetry on change only", func(t *testing.T) {
		var temps []string
		for _, b := range r.all(t) {
			if rd, ok := b.(*event.Reading); ok && rd.Type == "temperature" && rd.Sensor == "env" {
				temps = append(temps, fmt.Sprint(rd.Value))
			}
		}
		// Dozens of samples, a handful of readings: one per move.
		if got := strings.Join(temps, " "); got != "22.5 60 56 50 30" {
			t.Fatalf("temperature readings %q, want one per move beyond the deadband", got)
		}
	})

	// A restart in the middle of a fire alarm: the alarm stays in force
	// (doors released) until the sensors report, and is cleared if the
	// smoke is gone by then.
	r.drive(t, "smoke-pin", gpio.High)
	r.await(t, "alarm smoke smoke on")
	r.stop()
	r2 := startRig(t, ob, db) // a new simulator: the smoke is gone
	r2.mark = r.mark
	r2.waitListening(t)
	if d := r2.door(t, "D2"); !d.Released {
		r2.eventually(t, "escape door held again after the restart", func() bool { return r2.door(t, "D2").Released })
	}
	r2.await(t, "alarm smoke smoke off")
	r2.eventually(t, "escape door locked once the alarm cleared", func() bool { return !r2.door(t, "D2").Relay })
	t.Run("the list survives a restart", func(t *testing.T) {
		r2.swipe(t, "26:123:45678")
		r2.await(t, "access D1 granted")
	})
	r2.stop()
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestGatewayConfigErrors(t *testing.T) {
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ob.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	sc, err := sim.ParseScenario([]byte(rigScenario))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"a contact line the board lacks": func(c *Config) { c.Doors[0].Contact = "nowhere" },
		"a strike on an input line":      func(c *Config) { c.Doors[0].Strike = "water-pin" },
		"a bus the board lacks":          func(c *Config) { c.Sensors[2].Bus = "i2c-9" },
	} {
		cfg := rigConfig()
		mutate(&cfg)
		_, err := New(Options{Config: cfg, Site: "S1", Building: "B3", Log: ob, DB: db, Hardware: s, Sim: s})
		var ce interface{ Unwrap() error }
		if err == nil || !errors.As(err, &ce) {
			t.Errorf("%s: New = %v, want a config error", name, err)
		}
	}
	cfg := rigConfig()
	cfg.Hardware, cfg.SimScenario = HardwareSim, "/nonexistent/scenario.yaml"
	if _, err := New(Options{Config: cfg, Site: "S1", Building: "B3", Log: ob, DB: db}); err == nil || !strings.Contains(err.Error(), "sim-scenario") {
		t.Errorf("missing scenario: %v, want an error naming sim-scenario", err)
	}
}

// A building's list at the size limit (50,000 cards, ~850 KB) is kept in
// the store in pieces the small profile holds inline, and is in force again
// after a restart even when the replica no longer has it (the hub dropped
// it: the last list stays in force).
func TestLargeListSurvivesRestart(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // last: after the store closes
	dir := t.TempDir()
	ob, db, err := edgetest.OpenLog(t, dir, outbox.Options{Device: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	r := startRig(t, ob, db)
	r.waitListening(t)
	key := bytes.Repeat([]byte{7}, accesslist.KeySize)
	cards := [][]byte{accesslist.Hash(key, "26:123:45678")}
	for i := range event.MaxAccessCards - 1 {
		cards = append(cards, accesslist.Hash(key, fmt.Sprintf("26:%d:%d", i/60000, i%60000+1)))
	}
	slices.SortFunc(cards, bytes.Compare)
	cards = slices.CompactFunc(cards, bytes.Equal)
	list := accesslist.List{Site: "S1", Building: "B3", Issued: hlc.FromTime(time.Now()), Key: key,
		Doors: []accesslist.Door{{Name: "D1", Cards: cards}}}
	body, err := event.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) <= kv.SmallInline {
		t.Fatalf("list of %d bytes: the test needs one over the inline threshold %d", len(body), kv.SmallInline)
	}
	r.rep.apply(wire.Change{Entity: wire.EntityAccessList, ID: "S1:B3", Body: body})
	if st := r.g.ListState(); !st.Present || st.Doors["D1"] != len(cards) {
		t.Fatalf("list state %+v, want %d cards at D1", st, len(cards))
	}
	r.stop()
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}

	ob, db, err = edgetest.OpenLog(t, dir, outbox.Options{Device: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	// Every value stays under the threshold above which Badger would keep
	// it in its value log, whose failed syncs it ignores.
	if err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if n := it.Item().ValueSize(); n >= kv.SmallInline {
				t.Errorf("%q holds %d bytes, over the inline threshold", it.Item().Key(), n)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r2 := startRig(t, ob, db) // an empty replica
	defer r2.stop()
	r2.waitListening(t)
	if st := r2.g.ListState(); !st.Present || st.Doors["D1"] != len(cards) {
		t.Fatalf("after the restart: list state %+v, want %d cards at D1", st, len(cards))
	}
	r2.swipe(t, "26:123:45678")
	r2.await(t, "access D1 granted")
}
