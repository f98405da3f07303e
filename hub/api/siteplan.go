package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"linli/shared/event"
)

// SitePlan is a site's map for the governance map (社区治理地图): its
// buildings as rectangles or polygons in plan units (any scale; the
// dashboard fits Width×Height to the screen), with the doors, sensors and
// devices each holds, and background features. configs/site-xiangyang.yaml
// is an example.
type SitePlan struct {
	Site   string `yaml:"site" json:"site"`
	Name   string `yaml:"name" json:"name,omitempty"`
	NameEn string `yaml:"name_en" json:"name_en,omitempty"`
	// Agency is the organisation that answers the site's reports (its
	// residents' committee, 居委会), named to Open311 clients as
	// agency_responsible; Name stands in when it is empty.
	Agency string `yaml:"agency" json:"agency,omitempty"`
	// TimeZone is the site's IANA zone (Asia/Shanghai), in which the
	// dashboard and exports show its times; empty: the hub's --time-zone.
	TimeZone  string         `yaml:"time_zone" json:"time_zone,omitempty"`
	Width     float64        `yaml:"width" json:"width"`
	Height    float64        `yaml:"height" json:"height"`
	Buildings []PlanBuilding `yaml:"buildings" json:"buildings"`
	Features  []PlanFeature  `yaml:"features" json:"features,omitempty"`
	// ReportChoices are the common problems per category that the site's
	// kiosks offer as one-tap report titles; kiosks read and check them
	// (the hub only accepts the key).
	ReportChoices map[string][]map[string]string `yaml:"report_choices" json:"-"`
	// Staff lists whom reports may be assigned to besides the site's
	// operator accounts: the property manager's staff, contractors. With
	// a list an assignee must be on it (or an operator of the site);
	// without one any name is taken.
	Staff []PlanStaff `yaml:"staff" json:"staff,omitempty"`
	// SLA is the time to close a report, per category (fire_safety: 4h):
	// a report still open after it is overdue.
	SLA map[string]Duration `yaml:"sla" json:"sla,omitempty"`
}

// PlanStaff is someone reports can be assigned to.
type PlanStaff struct {
	Name string `yaml:"name" json:"name"`
	// Role says what they do (物业, electrician, contractor); shown only.
	Role string `yaml:"role" json:"role,omitempty"`
}

// Duration is a time limit written as Go writes durations (4h, 90m), or
// in days (3d).
type Duration time.Duration

// UnmarshalYAML parses 4h, 30m or 3d.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseLimit(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the limit as 4h0m0s.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON reads what MarshalJSON writes (and 3d).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := parseLimit(s)
	*d = Duration(v)
	return err
}

func parseLimit(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration such as 4h, 90m or 3d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 4h, 90m or 3d", s)
	}
	return v, nil
}

// PlanBuilding is one building: a rectangle (X, Y, W, H) or a polygon.
type PlanBuilding struct {
	ID      string       `yaml:"id" json:"id"`
	Name    string       `yaml:"name" json:"name,omitempty"`
	NameEn  string       `yaml:"name_en" json:"name_en,omitempty"`
	X       float64      `yaml:"x" json:"x"`
	Y       float64      `yaml:"y" json:"y"`
	W       float64      `yaml:"w" json:"w,omitempty"`
	H       float64      `yaml:"h" json:"h,omitempty"`
	Points  [][2]float64 `yaml:"points" json:"points,omitempty"`
	Doors   []string     `yaml:"doors" json:"doors,omitempty"`
	Sensors []string     `yaml:"sensors" json:"sensors,omitempty"`
	Devices []string     `yaml:"devices" json:"devices,omitempty"`
	// Units and Floors bound the unit text of reports filed at kiosks
	// (unit 1..Units, rooms on floors 1..Floors); 0: not known.
	Units  int `yaml:"units" json:"units,omitempty"`
	Floors int `yaml:"floors" json:"floors,omitempty"`
}

// PlanFeature is scenery: a road, a green, a gate, a square.
type PlanFeature struct {
	Kind    string       `yaml:"kind" json:"kind"` // road, green, water, gate, square
	Label   string       `yaml:"label" json:"label,omitempty"`
	LabelEn string       `yaml:"label_en" json:"label_en,omitempty"`
	X       float64      `yaml:"x" json:"x"`
	Y       float64      `yaml:"y" json:"y"`
	W       float64      `yaml:"w" json:"w,omitempty"`
	H       float64      `yaml:"h" json:"h,omitempty"`
	Points  [][2]float64 `yaml:"points" json:"points,omitempty"`
}

// Building finds a building by id.
func (p *SitePlan) Building(id string) (PlanBuilding, bool) {
	for _, b := range p.Buildings {
		if b.ID == id {
			return b, true
		}
	}
	return PlanBuilding{}, false
}

// Validate checks a plan, naming the first bad field.
func (p *SitePlan) Validate() error {
	if err := event.ValidID(p.Site); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	if p.TimeZone != "" {
		if _, err := time.LoadLocation(p.TimeZone); err != nil {
			return fmt.Errorf("time_zone: %q is not an IANA time zone such as Asia/Shanghai", p.TimeZone)
		}
	}
	if p.Width <= 0 || p.Height <= 0 {
		return errors.New("width and height must be positive")
	}
	for i, st := range p.Staff {
		if n := strings.TrimSpace(st.Name); n == "" || n != st.Name || len(n) > 64 {
			return fmt.Errorf("staff[%d].name: give a name of 1 to 64 bytes without surrounding spaces", i)
		}
		if slices.ContainsFunc(p.Staff[:i], func(o PlanStaff) bool { return o.Name == st.Name }) {
			return fmt.Errorf("staff[%d].name: %s twice", i, st.Name)
		}
	}
	for cat, d := range p.SLA {
		if !slices.Contains(event.Categories, cat) {
			return fmt.Errorf("sla.%s: not a report category (one of %v)", cat, event.Categories)
		}
		if d <= 0 {
			return fmt.Errorf("sla.%s: the time limit must be positive", cat)
		}
	}
	seen := map[string]bool{}
	for i, b := range p.Buildings {
		if err := event.ValidID(b.ID); err != nil {
			return fmt.Errorf("buildings[%d].id: %w", i, err)
		}
		if seen[b.ID] {
			return fmt.Errorf("buildings[%d].id: %s twice", i, b.ID)
		}
		seen[b.ID] = true
		if len(b.Points) == 0 && (b.W <= 0 || b.H <= 0) {
			return fmt.Errorf("buildings[%d] (%s): give w and h, or at least 3 points", i, b.ID)
		}
		if len(b.Points) > 0 && len(b.Points) < 3 {
			return fmt.Errorf("buildings[%d] (%s): a polygon needs at least 3 points", i, b.ID)
		}
	}
	return nil
}

// LoadPlans reads site plan files; two plans of one site are an error.
func LoadPlans(paths []string) (map[string]SitePlan, error) {
	out := map[string]SitePlan{}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("site plan: %w", err)
		}
		var p SitePlan
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("site plan %s: %w", path, err)
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("site plan %s: %w", path, err)
		}
		if _, dup := out[p.Site]; dup {
			return nil, fmt.Errorf("site plan %s: site %s has a plan already", path, p.Site)
		}
		out[p.Site] = p
	}
	return out, nil
}
