package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
	"periph.io/x/conn/v3/gpio"

	"linli/firmware/sht3x"
	"linli/firmware/wiegand"
)

// ErrScenario is wrapped by every error about a scenario file; the message names the
// field, the step or generator, and its line.
var ErrScenario = errors.New("sim: bad scenario")

// Scenario is a simulation script: the devices of one gateway, timed steps, and
// generators that repeat at random intervals. See configs/sim-scenario.yaml.
type Scenario struct {
	// Seed makes generator runs reproducible: the same seed, the same run.
	Seed uint64 `yaml:"seed"`
	// Speed is simulated seconds per real second; 0 means 1. Tests run at 1000 and more.
	Speed float64 `yaml:"speed"`
	// Duration ends the run after this much simulated time; 0 means after the last step
	// when there are no generators, and never when there are.
	Duration Duration `yaml:"duration"`

	Doors    []Door    `yaml:"doors"`
	Readers  []Reader  `yaml:"readers"`
	Contacts []Contact `yaml:"contacts"`
	// Outputs are the names of output lines (door strikes); the gateway drives them.
	Outputs []string `yaml:"outputs"`
	Sensors []Sensor `yaml:"sht3x"`

	Steps      []Step      `yaml:"steps"`
	Generators []Generator `yaml:"generators"`

	lines map[string][]int // line of each item of the top-level lists, for errors
}

// Door is a door contact on an input line; doors start closed.
type Door struct {
	Name string `yaml:"name"`
	Pin  string `yaml:"pin"`
	// OpenLevel is what the line reads while the door is open: "high" (default) or "low".
	OpenLevel Level `yaml:"open_level"`
}

// Reader is a Wiegand card reader on two input lines.
type Reader struct {
	Name string `yaml:"name"`
	D0   string `yaml:"d0"`
	D1   string `yaml:"d1"`
}

// Contact is an alarm contact (smoke, water) on an input line; contacts start clear.
type Contact struct {
	Name string `yaml:"name"`
	Pin  string `yaml:"pin"`
	// AlarmLevel is what the line reads during an alarm: "high" (default) or "low".
	AlarmLevel Level `yaml:"alarm_level"`
}

// Sensor is an SHT3x on a simulated I²C bus.
type Sensor struct {
	Name string `yaml:"name"`
	Bus  string `yaml:"bus"`
	// Addr is 0x44 (default) or 0x45.
	Addr        uint16  `yaml:"addr"`
	Temperature float64 `yaml:"temperature"`
	Humidity    float64 `yaml:"humidity"`
}

func (s Sensor) addr() uint16 {
	if s.Addr == 0 {
		return sht3x.DefaultAddr
	}
	return s.Addr
}

// Step is one thing that happens at a given time. It has exactly one action.
type Step struct {
	// At is the simulated time from the start of the run.
	At Duration `yaml:"at"`

	Swipe   *Swipe       `yaml:"swipe"`
	Bits    *Bits        `yaml:"bits"`
	Door    *DoorStep    `yaml:"door"`
	Contact *ContactStep `yaml:"contact"`
	Climate *Climate     `yaml:"climate"`
}

// Swipe presents a card to a reader.
type Swipe struct {
	Reader string `yaml:"reader"`
	// Card is a credential in wiegand's canonical form, e.g. "26:123:45678".
	Card string `yaml:"card"`
}

// Bits sends a raw frame to a reader, e.g. a bad read.
type Bits struct {
	Reader string `yaml:"reader"`
	// Frame is the bits in order, e.g. "10110".
	Frame string `yaml:"frame"`
}

// DoorStep opens or closes a door.
type DoorStep struct {
	Name string `yaml:"name"`
	// State is "open" or "closed".
	State string `yaml:"state"`
}

// ContactStep raises or clears an alarm contact.
type ContactStep struct {
	Name string `yaml:"name"`
	// State is "alarm" or "clear".
	State string `yaml:"state"`
}

// Climate sets what an SHT3x measures.
type Climate struct {
	Sensor      string   `yaml:"sensor"`
	Temperature *float64 `yaml:"temperature"`
	Humidity    *float64 `yaml:"humidity"`
}

// Generator repeats an activity. It first fires at Start plus a random share of the
// period, then every Every ± Jitter (uniform). It has exactly one activity.
type Generator struct {
	Every  Duration `yaml:"every"`
	Jitter Duration `yaml:"jitter"`
	Start  Duration `yaml:"start"`

	Visit *Visit      `yaml:"visit"`
	Drift *Drift      `yaml:"drift"`
	Alarm *AlarmSpell `yaml:"alarm"`
}

// Visit is a resident going through a door: a swipe (if Reader is set), the door opening
// OpenAfter later (if Door is set) and closing Hold after that; with HeldOpenChance it
// stays open HeldOpenHold instead (a propped door).
type Visit struct {
	Reader         string   `yaml:"reader"`
	Cards          []string `yaml:"cards"`
	Door           string   `yaml:"door"`
	OpenAfter      Duration `yaml:"open_after"`
	Hold           Duration `yaml:"hold"`
	HeldOpenChance float64  `yaml:"held_open_chance"`
	HeldOpenHold   Duration `yaml:"held_open_hold"`
}

// Drift moves a sensor's temperature and humidity by up to these amounts each time, at
// random, within the sensor's range.
type Drift struct {
	Sensor      string  `yaml:"sensor"`
	Temperature float64 `yaml:"temperature"`
	Humidity    float64 `yaml:"humidity"`
}

// AlarmSpell raises an alarm contact for For, then clears it.
type AlarmSpell struct {
	Contact string   `yaml:"contact"`
	For     Duration `yaml:"for"`
}

// Duration is a time.Duration written as in Go: "1.5s", "2m", "90ms".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 1.5s or 2m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Level is a line level written "high" or "low"; empty means high.
type Level string

func (l Level) level() gpio.Level { return l != "low" }

// LoadScenario reads and parses a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	sc, err := ParseScenario(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

// ParseScenario parses and validates a scenario. Unknown fields are errors.
func ParseScenario(data []byte) (*Scenario, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	sc := &Scenario{}
	if err := dec.Decode(sc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrScenario)
		}
		return nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	sc.lines = itemLines(&root)
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return sc, nil
}

// itemLines finds the line of each item of each top-level list.
func itemLines(root *yaml.Node) map[string][]int {
	lines := map[string][]int{}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return lines
	}
	m := root.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		for _, item := range m[i+1].Content {
			lines[m[i].Value] = append(lines[m[i].Value], item.Line)
		}
	}
	return lines
}

// where names an item for errors: "steps[2] (line 14)".
func (sc *Scenario) where(list string, i int) string {
	if l := sc.lines[list]; i < len(l) {
		return fmt.Sprintf("%s[%d] (line %d)", list, i, l[i])
	}
	return fmt.Sprintf("%s[%d]", list, i)
}

// Validate checks the scenario as a whole: names declared once, references to declared
// devices, one action per step, and values in range. Errors wrap ErrScenario.
func (sc *Scenario) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrScenario, fmt.Sprintf(format, a...))
	}
	switch {
	case sc.Speed < 0 || sc.Speed > 1e6:
		return bad("speed %v is outside 0..1e6", sc.Speed)
	case sc.Duration < 0:
		return bad("duration %v is negative", time.Duration(sc.Duration))
	}

	pins := map[string]string{} // pin name -> what uses it
	usePin := func(pin, user string) error {
		if pin == "" {
			return bad("%s: pin name is empty", user)
		}
		if other, ok := pins[pin]; ok {
			return bad("%s: pin %q is already used by %s", user, pin, other)
		}
		pins[pin] = user
		return nil
	}
	names := map[string]map[string]bool{"doors": {}, "readers": {}, "contacts": {}, "sht3x": {}}
	name := func(list string, i int, n string) error {
		switch {
		case n == "":
			return bad("%s: name is empty", sc.where(list, i))
		case names[list][n]:
			return bad("%s: name %q is declared twice", sc.where(list, i), n)
		}
		names[list][n] = true
		return nil
	}
	level := func(where, field string, l Level) error {
		if l != "" && l != "high" && l != "low" {
			return bad("%s: %s %q is not high or low", where, field, l)
		}
		return nil
	}
	for i, d := range sc.Doors {
		w := sc.where("doors", i)
		if err := errors.Join(name("doors", i, d.Name), usePin(d.Pin, w), level(w, "open_level", d.OpenLevel)); err != nil {
			return err
		}
	}
	for i, r := range sc.Readers {
		w := sc.where("readers", i)
		if err := errors.Join(name("readers", i, r.Name), usePin(r.D0, w+" d0"), usePin(r.D1, w+" d1")); err != nil {
			return err
		}
	}
	for i, c := range sc.Contacts {
		w := sc.where("contacts", i)
		if err := errors.Join(name("contacts", i, c.Name), usePin(c.Pin, w), level(w, "alarm_level", c.AlarmLevel)); err != nil {
			return err
		}
	}
	for i, o := range sc.Outputs {
		if err := usePin(o, sc.where("outputs", i)); err != nil {
			return err
		}
	}
	addrs := map[string]bool{}
	for i, s := range sc.Sensors {
		w := sc.where("sht3x", i)
		if err := name("sht3x", i, s.Name); err != nil {
			return err
		}
		key := fmt.Sprintf("%s/%#x", s.Bus, s.addr())
		switch {
		case s.Bus == "":
			return bad("%s: bus is empty", w)
		case s.addr() != sht3x.DefaultAddr && s.addr() != sht3x.AltAddr:
			return bad("%s: addr %#x is not 0x44 or 0x45", w, s.Addr)
		case addrs[key]:
			return bad("%s: a sensor is already at %#x on bus %q", w, s.addr(), s.Bus)
		}
		addrs[key] = true
		if err := climateRange(w, s.Temperature, s.Humidity); err != nil {
			return bad("%v", err)
		}
	}

	ref := func(where, list, n string) error {
		if !names[list][n] {
			return bad("%s: %q is not declared in %s", where, n, list)
		}
		return nil
	}
	for i, s := range sc.Steps {
		w := sc.where("steps", i)
		if s.At < 0 {
			return bad("%s: at %v is negative", w, time.Duration(s.At))
		}
		if n := count(s.Swipe != nil, s.Bits != nil, s.Door != nil, s.Contact != nil, s.Climate != nil); n != 1 {
			return bad("%s: has %d actions, want exactly one of swipe, bits, door, contact, climate", w, n)
		}
		var err error
		switch {
		case s.Swipe != nil:
			err = ref(w, "readers", s.Swipe.Reader)
			if _, perr := cardBits(s.Swipe.Card); perr != nil && err == nil {
				err = bad("%s: card: %v", w, perr)
			}
		case s.Bits != nil:
			err = ref(w, "readers", s.Bits.Reader)
			if _, ferr := frameBits(s.Bits.Frame); ferr != nil && err == nil {
				err = bad("%s: frame: %v", w, ferr)
			}
		case s.Door != nil:
			err = ref(w, "doors", s.Door.Name)
			if err == nil && s.Door.State != "open" && s.Door.State != "closed" {
				err = bad("%s: door state %q is not open or closed", w, s.Door.State)
			}
		case s.Contact != nil:
			err = ref(w, "contacts", s.Contact.Name)
			if err == nil && s.Contact.State != "alarm" && s.Contact.State != "clear" {
				err = bad("%s: contact state %q is not alarm or clear", w, s.Contact.State)
			}
		case s.Climate != nil:
			err = ref(w, "sht3x", s.Climate.Sensor)
			if err == nil && s.Climate.Temperature == nil && s.Climate.Humidity == nil {
				err = bad("%s: climate sets neither temperature nor humidity", w)
			}
			if err == nil {
				t, h := 20.0, 50.0
				if s.Climate.Temperature != nil {
					t = *s.Climate.Temperature
				}
				if s.Climate.Humidity != nil {
					h = *s.Climate.Humidity
				}
				if rerr := climateRange(w, t, h); rerr != nil {
					err = bad("%v", rerr)
				}
			}
		}
		if err != nil {
			return err
		}
	}

	for i, g := range sc.Generators {
		w := sc.where("generators", i)
		switch {
		case g.Every < Duration(100*time.Millisecond):
			return bad("%s: every %v is under 100ms", w, time.Duration(g.Every))
		case g.Jitter < 0 || g.Jitter >= g.Every:
			return bad("%s: jitter %v is not in [0, every)", w, time.Duration(g.Jitter))
		case g.Start < 0:
			return bad("%s: start %v is negative", w, time.Duration(g.Start))
		}
		if n := count(g.Visit != nil, g.Drift != nil, g.Alarm != nil); n != 1 {
			return bad("%s: has %d activities, want exactly one of visit, drift, alarm", w, n)
		}
		var err error
		switch {
		case g.Visit != nil:
			err = sc.validateVisit(w, g.Visit, ref)
		case g.Drift != nil:
			err = ref(w, "sht3x", g.Drift.Sensor)
			if err == nil && (g.Drift.Temperature < 0 || g.Drift.Humidity < 0 || g.Drift.Temperature > 50 || g.Drift.Humidity > 50) {
				err = bad("%s: drift steps must be in 0..50", w)
			}
		case g.Alarm != nil:
			err = ref(w, "contacts", g.Alarm.Contact)
			if err == nil && g.Alarm.For <= 0 {
				err = bad("%s: alarm for %v is not positive", w, time.Duration(g.Alarm.For))
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (sc *Scenario) validateVisit(w string, v *Visit, ref func(where, list, n string) error) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrScenario, w, fmt.Sprintf(format, a...))
	}
	if v.Reader == "" && v.Door == "" {
		return bad("visit has neither reader nor door")
	}
	if v.Reader != "" {
		if err := ref(w, "readers", v.Reader); err != nil {
			return err
		}
		if len(v.Cards) == 0 {
			return bad("visit with a reader has no cards")
		}
		for j, c := range v.Cards {
			if _, err := cardBits(c); err != nil {
				return bad("cards[%d]: %v", j, err)
			}
		}
	}
	if v.Door != "" {
		if err := ref(w, "doors", v.Door); err != nil {
			return err
		}
		if v.Hold <= 0 {
			return bad("visit hold %v is not positive", time.Duration(v.Hold))
		}
	}
	switch {
	case v.OpenAfter < 0:
		return bad("open_after %v is negative", time.Duration(v.OpenAfter))
	case v.HeldOpenChance < 0 || v.HeldOpenChance > 1:
		return bad("held_open_chance %v is not in 0..1", v.HeldOpenChance)
	case v.HeldOpenChance > 0 && v.HeldOpenHold <= 0:
		return bad("held_open_chance is set but held_open_hold %v is not positive", time.Duration(v.HeldOpenHold))
	}
	return nil
}

func climateRange(where string, t, h float64) error {
	if !(t >= -45 && t <= 130) || !(h >= 0 && h <= 100) {
		return fmt.Errorf("%s: temperature %v or humidity %v outside the sensor's range (-45..130 °C, 0..100 %%)", where, t, h)
	}
	return nil
}

func count(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// cardBits is the frame a reader sends for a card written "26:123:45678".
func cardBits(card string) ([]byte, error) {
	c, err := wiegand.ParseCredential(card)
	if err != nil {
		return nil, err
	}
	return wiegand.Encode(c)
}

// frameBits turns "1011" into bits for a reader.
func frameBits(s string) ([]byte, error) {
	if s == "" || len(s) > wiegand.MaxFrameBits {
		return nil, fmt.Errorf("%d bits, want 1..%d", len(s), wiegand.MaxFrameBits)
	}
	bits := make([]byte, len(s))
	for i := range len(s) {
		switch s[i] {
		case '0', '1':
			bits[i] = s[i] - '0'
		default:
			return nil, fmt.Errorf("%q at %d is not 0 or 1", s[i], i)
		}
	}
	return bits, nil
}
