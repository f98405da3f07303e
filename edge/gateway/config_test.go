package gateway

import (
	"errors"
	"strings"
	"testing"
	"time"

	"linli/shared/config"
)

// validConfig is a gateway with one door, its reader and three sensors, as
// Register's defaults leave the scalar settings.
func validConfig() Config {
	return Config{
		Hardware: HardwareSim, SimScenario: "sim.yaml", AccessMaxAge: 24 * time.Hour, HeatThreshold: 57, HeatHyst: 2,
		Sample: 5 * time.Second, DeadbandTemp: 0.5, DeadbandHum: 2, Heartbeat: 15 * time.Minute, ForcedGrace: time.Second,
		Doors:   []DoorConfig{{Name: "B3-main", Contact: "c", Strike: "s", Reader: "B3-main", Fallback: FallbackLast, Escape: true}},
		Readers: []ReaderConfig{{Name: "B3-main", D0: "d0", D1: "d1"}},
		Sensors: []SensorConfig{{Name: "smoke", Kind: SensorSmoke, Pin: "p1"}, {Name: "water", Kind: SensorWater, Pin: "p2", AlarmLevel: "low"},
			{Name: "env", Kind: SensorSHT3x, Bus: "i2c-1", Addr: 0x45}},
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name     string
		role     string
		building string
		mutate   func(*Config)
		setting  string // "" means valid
	}{
		{"valid", "gateway", "B3", func(*Config) {}, ""},
		{"no hardware at all", "gateway", "", func(c *Config) { *c = Config{Hardware: HardwareNone, Sample: time.Second, HeatThreshold: 57} }, ""},
		{"a kiosk with hardware", "kiosk", "B1", func(*Config) {}, "hardware"},
		{"a kiosk without", "kiosk", "B1", func(c *Config) { *c = Config{Hardware: HardwareNone} }, ""},
		{"unknown hardware", "gateway", "B3", func(c *Config) { c.Hardware = "gpio" }, "hardware"},
		{"devices but no hardware", "gateway", "B3", func(c *Config) { c.Hardware = HardwareNone }, "hardware"},
		{"sim without scenario", "gateway", "B3", func(c *Config) { c.SimScenario = "" }, "sim-scenario"},
		{"no building", "gateway", "", func(*Config) {}, "building"},
		{"heat threshold too low", "gateway", "B3", func(c *Config) { c.HeatThreshold = 20 }, "heat-threshold"},
		{"negative deadband", "gateway", "B3", func(c *Config) { c.DeadbandTemp = -1 }, "deadband-temperature"},
		{"sampling too fast", "gateway", "B3", func(c *Config) { c.Sample = time.Millisecond }, "sample-interval"},
		{"negative max age", "gateway", "B3", func(c *Config) { c.AccessMaxAge = -time.Second }, "access-max-age"},
		{"door name not an id", "gateway", "B3", func(c *Config) { c.Doors[0].Name = "B3 main" }, "doors"},
		{"door twice", "gateway", "B3", func(c *Config) { c.Doors = append(c.Doors, DoorConfig{Name: "B3-main", Contact: "c2"}) }, "doors"},
		{"unknown reader", "gateway", "B3", func(c *Config) { c.Doors[0].Reader = "B9" }, "doors"},
		{"reader without a door", "gateway", "B3", func(c *Config) { c.Doors[0].Reader = "" }, "readers"},
		{"reader without a strike", "gateway", "B3", func(c *Config) { c.Doors[0].Strike, c.Doors[0].Escape = "", false }, "doors"},
		{"escape without a strike", "gateway", "B3", func(c *Config) { c.Doors[0].Strike, c.Doors[0].Reader, c.Readers = "", "", nil }, "doors"},
		{"bad fallback", "gateway", "B3", func(c *Config) { c.Doors[0].Fallback = "open" }, "doors"},
		{"bad open level", "gateway", "B3", func(c *Config) { c.Doors[0].OpenLevel = "up" }, "doors"},
		{"unlock too long", "gateway", "B3", func(c *Config) { c.Doors[0].Unlock = time.Hour }, "doors"},
		{"line used twice", "gateway", "B3", func(c *Config) { c.Sensors[1].Pin = "d0" }, "sensors"},
		{"strike on a reader line", "gateway", "B3", func(c *Config) { c.Doors[0].Strike = "d1" }, "doors"},
		{"unknown sensor kind", "gateway", "B3", func(c *Config) { c.Sensors[0].Kind = "co2" }, "sensors"},
		{"sht3x without bus", "gateway", "B3", func(c *Config) { c.Sensors[2].Bus = "" }, "sensors"},
		{"sht3x bad address", "gateway", "B3", func(c *Config) { c.Sensors[2].Addr = 0x40 }, "sensors"},
		{"sensor twice", "gateway", "B3", func(c *Config) { c.Sensors[1].Name = "smoke" }, "sensors"},
		{"places", "gateway", "B3", func(c *Config) {
			c.Places = map[string]string{"smoke": "3号楼 1单元 楼道烟感", "bridge-7": "地下车库"}
		}, ""},
		{"place of a bad name", "gateway", "B3", func(c *Config) { c.Places = map[string]string{"B3 smoke": "楼道"} }, "places"},
		{"place with a control character", "gateway", "B3", func(c *Config) { c.Places = map[string]string{"smoke": "楼道\x07"} }, "places"},
		{"place too long", "gateway", "B3", func(c *Config) { c.Places = map[string]string{"smoke": strings.Repeat("楼", 101)} }, "places"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate(tt.role, tt.building)
			if tt.setting == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Setting != tt.setting {
				t.Fatalf("Validate = %v, want a config error naming %q", err, tt.setting)
			}
		})
	}
}

func TestDoorDefaults(t *testing.T) {
	d := DoorConfig{Name: "x"}.withDefaults()
	if d.Unlock != 5*time.Second || d.HeldOpen != 30*time.Second || d.Fallback != FallbackLocked {
		t.Fatalf("defaults %+v", d)
	}
	if d := (DoorConfig{HeldOpen: -1}).withDefaults(); d.HeldOpen != 0 {
		t.Fatalf("negative held_open gives %v, want 0 (disabled)", d.HeldOpen)
	}
}
