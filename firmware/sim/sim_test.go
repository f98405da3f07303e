package sim_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"periph.io/x/conn/v3/gpio"

	"linli/firmware/board"
	"linli/firmware/contact"
	"linli/firmware/door"
	"linli/firmware/gpiosim"
	"linli/firmware/relay"
	"linli/firmware/sht3x"
	"linli/firmware/sim"
	"linli/firmware/wiegand"
	"linli/shared/test/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var _ board.Hardware = (*sim.Sim)(nil)

const building = `
seed: 1
speed: 1000
doors:
  - {name: B3-main, pin: B3-main-contact}
readers:
  - {name: B3-main, d0: B3-main-d0, d1: B3-main-d1}
contacts:
  - {name: B3-smoke-1, pin: B3-smoke-1}
  - {name: B3-water-1, pin: B3-water-1, alarm_level: low}
outputs: [B3-main-strike]
sht3x:
  - {name: B3-env-1, bus: i2c-1, addr: 0x44, temperature: 21.5, humidity: 40}
steps:
  - {at: 1s, swipe: {reader: B3-main, card: "26:123:45678"}}
  - {at: 2s, door: {name: B3-main, state: open}}
  - {at: 4s, door: {name: B3-main, state: closed}}
  - {at: 10s, door: {name: B3-main, state: open}}
  - {at: 200s, door: {name: B3-main, state: closed}}
  - {at: 210s, contact: {name: B3-smoke-1, state: alarm}}
  - {at: 230s, contact: {name: B3-smoke-1, state: clear}}
  - {at: 235s, contact: {name: B3-water-1, state: alarm}}
  - {at: 240s, bits: {reader: B3-main, frame: "1000"}}
  - {at: 245s, swipe: {reader: B3-main, card: "34:4097:513"}}
  - {at: 250s, climate: {sensor: B3-env-1, temperature: 30, humidity: 60}}
`

func collect[E any](t *testing.T, ch <-chan E, n int) []E {
	t.Helper()
	var got []E
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-timeout:
			t.Fatalf("got %d events %+v within 10s, want %d", len(got), got, n)
		}
	}
	return got
}

// TestScenarioThroughDrivers plays a short scenario at 1000× through the real drivers,
// wired as a gateway wires them: by name through board.Hardware, on the sim's clock.
func TestScenarioThroughDrivers(t *testing.T) {
	sc, err := sim.ParseScenario([]byte(building))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hw board.Hardware = s
	pin := func(name string) gpio.PinIn {
		p, err := hw.PinIn(name)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	doorCfg := door.DefaultConfig("B3-main")
	doorCfg.HeldOpen, doorCfg.Now = time.Minute, hw.Now
	ds, err := door.New(pin("B3-main-contact"), doorCfg)
	if err != nil {
		t.Fatal(err)
	}
	readerCfg := wiegand.DefaultConfig("B3-main")
	readerCfg.Now = hw.Now
	rd, err := wiegand.NewReader(pin("B3-main-d0"), pin("B3-main-d1"), readerCfg)
	if err != nil {
		t.Fatal(err)
	}
	var contacts []*contact.Contact
	for _, c := range []struct {
		name  string
		level gpio.Level
	}{{"B3-smoke-1", gpio.High}, {"B3-water-1", gpio.Low}} {
		cfg := contact.DefaultConfig(c.name)
		cfg.AlarmLevel, cfg.Now = c.level, hw.Now
		ct, err := contact.New(pin(c.name), cfg)
		if err != nil {
			t.Fatal(err)
		}
		contacts = append(contacts, ct)
	}

	ctx, cancel := context.WithCancel(context.Background())
	doorEvents := make(chan door.Event, 32)
	swipes := make(chan wiegand.Swipe, 32)
	alarms := make(chan contact.Event, 32)
	var wg sync.WaitGroup
	goRun := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				t.Errorf("driver: %v", err)
			}
		}()
	}
	goRun(func() error { return ds.Run(ctx, doorEvents) })
	goRun(func() error { return rd.Run(ctx, swipes) })
	for _, c := range contacts {
		goRun(func() error { return c.Run(ctx, alarms) })
	}
	defer func() { cancel(); wg.Wait() }()

	for _, name := range []string{"B3-main-contact", "B3-main-d0", "B3-main-d1", "B3-smoke-1", "B3-water-1"} {
		p := mustPin(t, s, name)
		poll.WaitForWithin(t, 5*time.Second, name+": a driver listening", p.Listening)
	}

	bus, err := hw.I2C("i2c-1")
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	env, err := sht3x.New(bus, sht3x.Config{})
	if err != nil {
		t.Fatal(err)
	}
	checkClimate := func(temp, hum float64) {
		t.Helper()
		r, err := env.Sense(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(r.Temperature-temp) > 0.01 || math.Abs(r.Humidity-hum) > 0.01 {
			t.Errorf("Sense = %+v, want %v °C %v %%", r, temp, hum)
		}
	}
	checkClimate(21.5, 40)

	strike, err := hw.PinOut("B3-main-strike")
	if err != nil {
		t.Fatal(err)
	}
	rl, err := relay.New(strike, relay.Config{Name: "B3-main-strike"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.Hold(true); err != nil {
		t.Fatal(err)
	}
	if mustPin(t, s, "B3-main-strike").Read() != gpio.High {
		t.Error("strike line not High while the relay holds")
	}

	epoch := hw.Now() // the clock stands still until Run
	at := func(sec int) time.Time { return epoch.Add(time.Duration(sec) * time.Second) }
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}

	wantDoor := []door.Event{
		{Door: "B3-main", Kind: door.Open, At: at(2)},
		{Door: "B3-main", Kind: door.Close, At: at(4)},
		{Door: "B3-main", Kind: door.Open, At: at(10)},
		{Door: "B3-main", Kind: door.HeldOpen, At: at(70)},
		{Door: "B3-main", Kind: door.Close, At: at(200)},
	}
	for i, got := range collect(t, doorEvents, len(wantDoor)) {
		if got != wantDoor[i] {
			t.Errorf("door event %d: got %+v, want %+v", i, got, wantDoor[i])
		}
	}

	wantAlarms := []contact.Event{
		{Sensor: "B3-smoke-1", State: contact.Alarm, At: at(210)},
		{Sensor: "B3-smoke-1", State: contact.Clear, At: at(230)},
		{Sensor: "B3-water-1", State: contact.Alarm, At: at(235)},
	}
	// Each sensor has its own watcher, so under load two sensors' events may
	// reach the shared channel out of turn; their times must still be right.
	gotAlarms := collect(t, alarms, len(wantAlarms))
	slices.SortStableFunc(gotAlarms, func(a, b contact.Event) int { return a.At.Compare(b.At) })
	for i, got := range gotAlarms {
		if got != wantAlarms[i] {
			t.Errorf("alarm event %d: got %+v, want %+v", i, got, wantAlarms[i])
		}
	}

	got := collect(t, swipes, 3)
	if got[0].Err != nil || got[0].Credential.String() != "26:123:45678" || !got[0].At.Equal(at(1)) {
		t.Errorf("swipe 0: %+v, want 26:123:45678 at %v", got[0], at(1))
	}
	if !errors.Is(got[1].Err, wiegand.ErrFrameLength) || len(got[1].Bits) != 4 {
		t.Errorf("swipe 1: %+v, want a 4-bit bad read", got[1])
	}
	if got[2].Err != nil || got[2].Credential.String() != "34:4097:513" {
		t.Errorf("swipe 2: %+v, want 34:4097:513", got[2])
	}

	checkClimate(30, 60)
	if err := rl.Hold(false); err != nil {
		t.Fatal(err)
	}
	if mustPin(t, s, "B3-main-strike").Read() != gpio.Low {
		t.Error("strike line not Low after the hold")
	}
}

const generated = `
seed: %d
speed: 1000000
duration: 6h
doors: [{name: B3-main, pin: c}]
readers: [{name: B3-main, d0: d0, d1: d1}]
contacts: [{name: smoke, pin: s}]
sht3x: [{name: env, bus: i2c-1, temperature: 20, humidity: 50}]
generators:
  - every: 10m
    jitter: 5m
    visit: {reader: B3-main, door: B3-main, cards: ["26:1:1", "26:1:2", "34:7:9"], open_after: 2s, hold: 5s, held_open_chance: 0.3, held_open_hold: 3m}
  - every: 5m
    drift: {sensor: env, temperature: 0.5, humidity: 1}
  - every: 2h
    jitter: 1h
    alarm: {contact: smoke, for: 10m}
`

// runGenerated runs the generator scenario with no drivers attached and returns the
// actions it took and the sensor's final values.
func runGenerated(t *testing.T, seed int) (string, sht3x.Reading) {
	t.Helper()
	sc, err := sim.ParseScenario([]byte(strings.Replace(generated, "%d", string(rune('0'+seed)), 1)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	s, err := sim.New(sc, log)
	if err != nil {
		t.Fatal(err)
	}
	start := s.Now()
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.Now().Sub(start); got < 6*time.Hour {
		t.Errorf("clock at %v after Run, want at least the 6h duration", got)
	}
	bus, err := s.Bus("i2c-1")
	if err != nil {
		t.Fatal(err)
	}
	r, ok := bus.Reading(0x44)
	if !ok {
		t.Fatal("no sensor at 0x44")
	}
	return buf.String(), r
}

func TestGeneratorsReproducible(t *testing.T) {
	log1, r1 := runGenerated(t, 1)
	log2, r2 := runGenerated(t, 1)
	if log1 != log2 || r1 != r2 {
		t.Fatalf("two runs with seed 1 differ:\n%s\n---\n%s", log1, log2)
	}
	for _, want := range []string{"swipe 26:1:", "door B3-main open", "door B3-main closed", "alarm smoke", "clear smoke"} {
		if !strings.Contains(log1, want) {
			t.Errorf("6h of generated activity has no %q:\n%s", want, log1)
		}
	}
	if r1 == (sht3x.Reading{Temperature: 20, Humidity: 50}) {
		t.Error("climate did not drift")
	}
	if log3, _ := runGenerated(t, 2); log3 == log1 {
		t.Error("seeds 1 and 2 gave the same run")
	}
}

func TestRunCancelled(t *testing.T) {
	sc, err := sim.ParseScenario([]byte("speed: 1\ndoors: [{name: d, pin: p}]\nsteps: [{at: 1h, door: {name: d, state: open}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	if mustPin(t, s, "p").Read() != gpio.Low {
		t.Error("a step ran after cancel")
	}
}

func TestLookups(t *testing.T) {
	sc, err := sim.ParseScenario([]byte(building))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PinIn("nope"); !errors.Is(err, board.ErrNotFound) {
		t.Errorf("PinIn(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.I2C("i2c-9"); !errors.Is(err, board.ErrNotFound) {
		t.Errorf("I2C(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.PinIn("B3-main-strike"); err == nil {
		t.Error("PinIn of an output succeeded")
	}
	if _, err := s.PinOut("B3-main-d0"); err == nil {
		t.Error("PinOut of an input succeeded")
	}
	// A sensor address with nothing on it fails as on a real bus.
	bus, err := s.I2C("i2c-1")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := sht3x.New(bus, sht3x.Config{Addr: sht3x.AltAddr, Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Sense(context.Background()); !errors.Is(err, sht3x.ErrNoDevice) {
		t.Errorf("Sense at 0x45 = %v, want ErrNoDevice", err)
	}
	// Reading without a measurement is refused, as the sensor NACKs it.
	if err := bus.Tx(0x44, nil, make([]byte, 6)); err == nil {
		t.Error("read without a measurement command succeeded")
	}
}

func mustPin(t *testing.T, s *sim.Sim, name string) *gpiosim.Pin {
	t.Helper()
	p, err := s.Pin(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
