package sim_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"linli/firmware/sim"
)

func TestConfigFileLoads(t *testing.T) {
	sc, err := sim.LoadScenario("../../configs/sim-scenario.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Steps) == 0 || len(sc.Generators) == 0 {
		t.Errorf("configs/sim-scenario.yaml has %d steps and %d generators, want some of each", len(sc.Steps), len(sc.Generators))
	}
	if _, err := sim.New(sc, nil); err != nil {
		t.Error(err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := sim.LoadScenario(t.TempDir() + "/none.yaml"); !errors.Is(err, sim.ErrScenario) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadScenario = %v, want ErrScenario and ErrNotExist", err)
	}
}

const devices = `
doors: [{name: D, pin: door}]
readers: [{name: R, d0: d0, d1: d1}]
contacts: [{name: S, pin: smoke}]
sht3x: [{name: E, bus: i2c-1, temperature: 20, humidity: 50}]
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // all must appear in the error
	}{
		{"empty", "", []string{"empty file"}},
		{"not yaml", "a: [", []string{"yaml"}},
		{"not a mapping", "- 1\n- 2", []string{"cannot unmarshal"}},
		{"unknown top field", "seed: 1\nspeeed: 2\n", []string{"line 2", "speeed"}},
		{"unknown step field", devices + "steps:\n  - at: 1s\n    door: {name: D, state: open, colour: red}\n", []string{"colour"}},
		{"bad duration", devices + "steps:\n  - at: soon\n    door: {name: D, state: open}\n", []string{"line 7", `"soon"`, "duration"}},
		{"negative speed", "speed: -1\n", []string{"speed"}},
		{"two actions", devices + "steps:\n  - at: 1s\n    door: {name: D, state: open}\n    contact: {name: S, state: alarm}\n",
			[]string{"steps[0] (line 7)", "2 actions"}},
		{"no action", devices + "steps:\n  - at: 1s\n", []string{"steps[0]", "0 actions"}},
		{"undeclared door", devices + "steps:\n  - {at: 1s, door: {name: X, state: open}}\n", []string{"steps[0] (line 7)", `"X"`, "doors"}},
		{"bad door state", devices + "steps:\n  - {at: 1s, door: {name: D, state: ajar}}\n", []string{"ajar"}},
		{"bad contact state", devices + "steps:\n  - {at: 1s, contact: {name: S, state: on}}\n", []string{"on"}},
		{"bad card", devices + "steps:\n  - {at: 1s, swipe: {reader: R, card: \"26:300:1\"}}\n", []string{"steps[0]", "card", "facility 300"}},
		{"bad frame", devices + "steps:\n  - {at: 1s, bits: {reader: R, frame: \"10x\"}}\n", []string{"frame", "not 0 or 1"}},
		{"negative at", devices + "steps:\n  - {at: -1s, door: {name: D, state: open}}\n", []string{"negative"}},
		{"climate out of range", devices + "steps:\n  - {at: 1s, climate: {sensor: E, humidity: 120}}\n", []string{"humidity 120"}},
		{"climate sets nothing", devices + "steps:\n  - {at: 1s, climate: {sensor: E}}\n", []string{"neither"}},
		{"pin used twice", "doors: [{name: D, pin: p}]\ncontacts: [{name: S, pin: p}]\n", []string{"contacts[0] (line 2)", `pin "p"`, "doors[0]"}},
		{"name twice", "doors: [{name: D, pin: p}, {name: D, pin: q}]\n", []string{"doors[1]", "declared twice"}},
		{"empty pin", "doors: [{name: D}]\n", []string{"doors[0]", "pin name is empty"}},
		{"bad level", "doors: [{name: D, pin: p, open_level: up}]\n", []string{"open_level", "up"}},
		{"bad addr", "sht3x: [{name: E, bus: b, addr: 0x40, temperature: 20}]\n", []string{"addr 0x40"}},
		{"same addr", "sht3x: [{name: E, bus: b, temperature: 20}, {name: F, bus: b, addr: 0x44, temperature: 20}]\n", []string{"sht3x[1]", "already at 0x44"}},
		{"generator too fast", devices + "generators:\n  - {every: 1ms, drift: {sensor: E, temperature: 1}}\n", []string{"generators[0] (line 7)", "under 100ms"}},
		{"jitter too big", devices + "generators:\n  - {every: 1s, jitter: 1s, drift: {sensor: E}}\n", []string{"jitter"}},
		{"two activities", devices + "generators:\n  - {every: 1s, drift: {sensor: E}, alarm: {contact: S, for: 1s}}\n", []string{"2 activities"}},
		{"visit without cards", devices + "generators:\n  - {every: 1s, visit: {reader: R}}\n", []string{"no cards"}},
		{"visit bad card", devices + "generators:\n  - {every: 1s, visit: {reader: R, cards: [\"x\"]}}\n", []string{"cards[0]"}},
		{"visit without hold", devices + "generators:\n  - {every: 1s, visit: {door: D}}\n", []string{"hold"}},
		{"held open without hold", devices + "generators:\n  - {every: 1s, visit: {door: D, hold: 1s, held_open_chance: 0.5}}\n", []string{"held_open_hold"}},
		{"alarm without for", devices + "generators:\n  - {every: 1s, alarm: {contact: S}}\n", []string{"alarm for"}},
		{"alarm undeclared", devices + "generators:\n  - {every: 1s, alarm: {contact: Z, for: 1s}}\n", []string{`"Z"`, "contacts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sim.ParseScenario([]byte(tt.yaml))
			if !errors.Is(err, sim.ErrScenario) {
				t.Fatalf("ParseScenario = %v, want ErrScenario", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// FuzzParseScenario: scenario files come from outside. Parsing must not panic, fail only
// with ErrScenario, and what it accepts must build a simulator.
func FuzzParseScenario(f *testing.F) {
	if data, err := os.ReadFile("../../configs/sim-scenario.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(building))
	f.Add([]byte(generated))
	f.Add([]byte(devices + "steps:\n  - {at: 1s, bits: {reader: R, frame: \"1\"}}\n"))
	f.Add([]byte("a: &a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := sim.ParseScenario(data)
		if err != nil {
			if !errors.Is(err, sim.ErrScenario) {
				t.Fatalf("ParseScenario: %v does not wrap ErrScenario", err)
			}
			return
		}
		if _, err := sim.New(sc, nil); err != nil {
			t.Fatalf("New of a parsed scenario: %v", err)
		}
	})
}
