package gateway

import (
	"fmt"
	"math"
	"time"

	"linli/firmware/sht3x"
	"linli/shared/config"
	"linli/shared/event"
)

// Hardware sources.
const (
	HardwareNone = "none" // no drivers: the HTTP API only
	HardwareSim  = "sim"  // the simulator, from SimScenario
	HardwareHost = "host" // real pins and buses through periph.io host drivers
)

// Sensor kinds in the config.
const (
	SensorSmoke = "smoke" // a detector's alarm contact on a GPIO input
	SensorWater = "water" // a leak sensor's contact on a GPIO input
	SensorSHT3x = "sht3x" // temperature and humidity over I²C
)

// Config is the gateway part of an edge's settings: scalar settings (flag,
// LINLI_* variable or config key) and the doors, readers, sensors and pin
// aliases, which only the config file can describe.
type Config struct {
	Hardware      string
	SimScenario   string
	AccessMaxAge  time.Duration
	HeatThreshold float64
	HeatHyst      float64
	Sample        time.Duration
	DeadbandTemp  float64
	DeadbandHum   float64
	Heartbeat     time.Duration
	ForcedGrace   time.Duration

	Doors   []DoorConfig      `yaml:"doors"`
	Readers []ReaderConfig    `yaml:"readers"`
	Sensors []SensorConfig    `yaml:"sensors"`
	Pins    map[string]string `yaml:"pins"` // config name → board name (host hardware)
	// Places names where each sensor or door is, in the words residents
	// and operators use ("3号楼 1单元 楼道烟感"); sensors that report over
	// HTTP are named here too. Alarms carry it.
	Places map[string]string `yaml:"places"`
}

// DoorConfig is one door: its contact, strike, reader and rules.
type DoorConfig struct {
	Name string `yaml:"name"`
	// Contact is the input line of the door's reed switch.
	Contact string `yaml:"contact"`
	// OpenLevel is what Contact reads while the door is open: high (default)
	// or low.
	OpenLevel string `yaml:"open_level"`
	// Strike is the output line of the strike relay; empty for a door the
	// gateway only watches.
	Strike string `yaml:"strike"`
	// StrikeActiveLow: the relay board releases on a low output.
	StrikeActiveLow bool `yaml:"strike_active_low"`
	// Reader is the name of the card reader at this door, if any.
	Reader string `yaml:"reader"`
	// Unlock is how long a granted card releases the strike (default 5s).
	Unlock time.Duration `yaml:"unlock"`
	// HeldOpen is how long the door may stay open before held_open
	// (default 30s; 0 keeps the default, negative disables).
	HeldOpen time.Duration `yaml:"held_open"`
	// Fallback is locked (default) or last: what the door does while the
	// access list is older than access-max-age.
	Fallback Fallback `yaml:"fallback"`
	// Escape marks an escape route: released while a fire alarm lasts.
	Escape bool `yaml:"escape"`
}

// ReaderConfig is a Wiegand card reader on two input lines.
type ReaderConfig struct {
	Name string `yaml:"name"`
	D0   string `yaml:"d0"`
	D1   string `yaml:"d1"`
}

// SensorConfig is a detector contact (smoke, water) on an input line or an
// SHT3x on an I²C bus.
type SensorConfig struct {
	Name string `yaml:"name"`
	Kind string `yaml:"kind"` // smoke, water or sht3x
	// Pin and AlarmLevel (high, the default, or low) of a contact.
	Pin        string `yaml:"pin"`
	AlarmLevel string `yaml:"alarm_level"`
	// Bus and Addr (0x44, the default, or 0x45) of an SHT3x.
	Bus  string `yaml:"bus"`
	Addr uint16 `yaml:"addr"`
}

// Register adds the gateway's settings and sections to s.
func (c *Config) Register(s *config.Set) {
	s.String(&c.Hardware, "hardware", HardwareNone, "gateway hardware: none, sim (the simulator) or host (real pins via periph.io)")
	s.String(&c.SimScenario, "sim-scenario", "configs/sim-scenario.yaml", "scenario file of the simulator (hardware sim)")
	s.Duration(&c.AccessMaxAge, "access-max-age", 24*time.Hour, "an access list not confirmed by the hub for this long is stale: each door follows its fallback (0: never stale)")
	s.Float(&c.HeatThreshold, "heat-threshold", 57, "temperature (°C) from which a heat alarm is raised")
	s.Float(&c.HeatHyst, "heat-hysteresis", 2, "a heat alarm clears below heat-threshold minus this (°C)")
	s.Duration(&c.Sample, "sample-interval", 5*time.Second, "how often temperature and humidity are sampled (heat alarms are checked on every sample)")
	s.Float(&c.DeadbandTemp, "deadband-temperature", 0.5, "record a temperature reading when it moved this much (°C) since the last one recorded")
	s.Float(&c.DeadbandHum, "deadband-humidity", 2, "record a humidity reading when it moved this much (%RH) since the last one recorded")
	s.Duration(&c.Heartbeat, "telemetry-heartbeat", 15*time.Minute, "record every sensor's value at least this often even when it has not moved (0: never)")
	s.Duration(&c.ForcedGrace, "forced-grace", time.Second, "how long an opening with no card seen yet waits for a late card read before it is called forced")
	s.Section("doors", &c.Doors)
	s.Section("readers", &c.Readers)
	s.Section("sensors", &c.Sensors)
	s.Section("pins", &c.Pins)
	s.Section("places", &c.Places)
}

// Validate checks the gateway settings of an edge in role at building,
// naming the first bad setting in a *config.Error. An edge that is not a
// gateway may have no hardware.
func (c *Config) Validate(role, building string) error {
	switch c.Hardware {
	case HardwareNone, HardwareSim, HardwareHost:
	default:
		return config.Errorf("hardware", "%q is not none, sim or host", c.Hardware)
	}
	devices := len(c.Doors) + len(c.Readers) + len(c.Sensors)
	if role != "gateway" {
		if c.Hardware != HardwareNone || devices > 0 {
			return config.Errorf("hardware", "only a gateway has hardware; this edge's role is %s", role)
		}
		return nil
	}
	if c.Hardware == HardwareNone && devices > 0 {
		return config.Errorf("hardware", "doors, readers or sensors are configured but hardware is none: set sim or host")
	}
	if c.Hardware == HardwareSim && c.SimScenario == "" {
		return config.Errorf("sim-scenario", "is required with hardware sim")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{{"access-max-age", c.AccessMaxAge, 0}, {"sample-interval", c.Sample, 100 * time.Millisecond},
		{"telemetry-heartbeat", c.Heartbeat, 0}, {"forced-grace", c.ForcedGrace, 0}} {
		if d.v < d.min {
			return config.Errorf(d.name, "must be at least %v", d.min)
		}
	}
	for _, f := range []struct {
		name     string
		v        float64
		min, max float64
	}{{"heat-threshold", c.HeatThreshold, 30, 150}, {"heat-hysteresis", c.HeatHyst, 0, 20},
		{"deadband-temperature", c.DeadbandTemp, 0, 50}, {"deadband-humidity", c.DeadbandHum, 0, 100}} {
		if math.IsNaN(f.v) || f.v < f.min || f.v > f.max {
			return config.Errorf(f.name, "%v is outside %v..%v", f.v, f.min, f.max)
		}
	}
	if devices > 0 && building == "" {
		return config.Errorf("building", "a gateway with doors or sensors needs its building (access lists are per building)")
	}
	for name, place := range c.Places {
		if err := event.ValidID(name); err != nil {
			return config.Errorf("places", "%q: name %v", name, err)
		}
		if err := (&event.Alarm{Sensor: name, Type: AlarmSmoke, Place: place}).Validate(); err != nil {
			return config.Errorf("places", "%s: %v", name, err)
		}
	}
	return c.validateDevices()
}

// validateDevices checks the sections: names are event ids and unique,
// references resolve, a line is used once.
func (c *Config) validateDevices() error {
	lines := map[string]string{}
	line := func(section, what, name string) error {
		if name == "" {
			return config.Errorf(section, "%s: line name is empty", what)
		}
		if other, ok := lines[name]; ok {
			return config.Errorf(section, "%s: line %q is already used by %s", what, name, other)
		}
		lines[name] = what
		return nil
	}
	level := func(section, what, field, v string) error {
		if v != "" && v != "high" && v != "low" {
			return config.Errorf(section, "%s: %s %q is not high or low", what, field, v)
		}
		return nil
	}
	readers := map[string]bool{}
	for i, r := range c.Readers {
		what := fmt.Sprintf("readers[%d] (%s)", i, r.Name)
		if err := event.ValidID(r.Name); err != nil {
			return config.Errorf("readers", "%s: name %v", what, err)
		}
		if readers[r.Name] {
			return config.Errorf("readers", "%s: declared twice", what)
		}
		readers[r.Name] = true
		if err := line("readers", what+" d0", r.D0); err != nil {
			return err
		}
		if err := line("readers", what+" d1", r.D1); err != nil {
			return err
		}
	}
	doors, usedReaders := map[string]bool{}, map[string]string{}
	for i, d := range c.Doors {
		what := fmt.Sprintf("doors[%d] (%s)", i, d.Name)
		if err := event.ValidID(d.Name); err != nil {
			return config.Errorf("doors", "%s: name %v", what, err)
		}
		if doors[d.Name] {
			return config.Errorf("doors", "%s: declared twice", what)
		}
		doors[d.Name] = true
		if err := line("doors", what+" contact", d.Contact); err != nil {
			return err
		}
		if d.Strike != "" {
			if err := line("doors", what+" strike", d.Strike); err != nil {
				return err
			}
		}
		if err := level("doors", what, "open_level", d.OpenLevel); err != nil {
			return err
		}
		if d.Reader != "" {
			if !readers[d.Reader] {
				return config.Errorf("doors", "%s: reader %q is not under readers", what, d.Reader)
			}
			if other, ok := usedReaders[d.Reader]; ok {
				return config.Errorf("doors", "%s: reader %q already serves door %s", what, d.Reader, other)
			}
			usedReaders[d.Reader] = d.Name
			if d.Strike == "" {
				return config.Errorf("doors", "%s: a door with a reader needs a strike to release", what)
			}
		}
		if d.Fallback != "" && d.Fallback != FallbackLocked && d.Fallback != FallbackLast {
			return config.Errorf("doors", "%s: fallback %q is not locked or last", what, d.Fallback)
		}
		if d.Unlock < 0 || d.Unlock > 5*time.Minute {
			return config.Errorf("doors", "%s: unlock %v is outside 0..5m", what, d.Unlock)
		}
		if d.Escape && d.Strike == "" {
			return config.Errorf("doors", "%s: an escape door needs a strike to release", what)
		}
	}
	for i, r := range c.Readers {
		if _, ok := usedReaders[r.Name]; !ok {
			return config.Errorf("readers", "readers[%d] (%s): no door names this reader", i, r.Name)
		}
	}
	names := map[string]bool{}
	for i, s := range c.Sensors {
		what := fmt.Sprintf("sensors[%d] (%s)", i, s.Name)
		if err := event.ValidID(s.Name); err != nil {
			return config.Errorf("sensors", "%s: name %v", what, err)
		}
		if names[s.Name] {
			return config.Errorf("sensors", "%s: declared twice", what)
		}
		names[s.Name] = true
		switch s.Kind {
		case SensorSmoke, SensorWater:
			if err := line("sensors", what, s.Pin); err != nil {
				return err
			}
			if err := level("sensors", what, "alarm_level", s.AlarmLevel); err != nil {
				return err
			}
		case SensorSHT3x:
			if s.Bus == "" {
				return config.Errorf("sensors", "%s: bus is empty", what)
			}
			if s.Addr != 0 && s.Addr != sht3x.DefaultAddr && s.Addr != sht3x.AltAddr {
				return config.Errorf("sensors", "%s: addr %#x is not 0x44 or 0x45", what, s.Addr)
			}
		default:
			return config.Errorf("sensors", "%s: kind %q is not smoke, water or sht3x", what, s.Kind)
		}
	}
	return nil
}

// withDefaults fills in what a door left out.
func (d DoorConfig) withDefaults() DoorConfig {
	if d.Unlock == 0 {
		d.Unlock = 5 * time.Second
	}
	if d.HeldOpen == 0 {
		d.HeldOpen = 30 * time.Second
	}
	if d.HeldOpen < 0 {
		d.HeldOpen = 0 // door.Config: 0 disables held-open
	}
	if d.Fallback == "" {
		d.Fallback = FallbackLocked
	}
	return d
}
