package kiosk

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"linli/shared/event"
	"linli/shared/httpx"
)

// Plan is what a kiosk knows of its site's plan: the buildings a report
// may name (with their units and floors, where the plan gives them) and
// the common problems of each category, offered as one-tap choices. It is
// read from the same site plan file the hub draws its map from, so a
// community edits one list; the kiosk needs it offline, so it reads the
// file at start rather than asking the hub.
type Plan struct {
	Site      string              `yaml:"site" json:"site"`
	Buildings []PlanBuilding      `yaml:"buildings" json:"buildings"`
	Choices   map[string][]Choice `yaml:"report_choices" json:"report_choices"`
}

// PlanBuilding is one building a report may name. Units and Floors, when
// set, bound the unit text: unit 1..Units, rooms on floors 1..Floors
// numbered floor×100 + door (402 is floor 4, door 2).
type PlanBuilding struct {
	ID     string `yaml:"id" json:"id"`
	Name   string `yaml:"name" json:"name,omitempty"`
	NameEn string `yaml:"name_en" json:"name_en,omitempty"`
	Units  int    `yaml:"units" json:"units,omitempty"`
	Floors int    `yaml:"floors" json:"floors,omitempty"`
}

// Choice is one common problem: the title a tap fills, in each language.
type Choice struct {
	Zh string `yaml:"zh" json:"zh"`
	En string `yaml:"en" json:"en,omitempty"`
}

// maxTitle is the report title's limit in characters, as the UI and the
// event's validation have it.
const maxTitle = 120

// LoadPlan reads a site plan file. Keys the kiosk has no use for (the
// map's shapes, doors, sensors) are ignored: the hub checks those.
func LoadPlan(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("site plan: %w", err)
	}
	var p Plan
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&p); err != nil {
		return nil, fmt.Errorf("site plan %s: %w", path, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("site plan %s: %w", path, err)
	}
	return &p, nil
}

// Validate checks what the kiosk reads, naming the first bad field.
func (p *Plan) Validate() error {
	if err := event.ValidID(p.Site); err != nil {
		return fmt.Errorf("site: %w", err)
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
		if b.Units < 0 || b.Units > 99 {
			return fmt.Errorf("buildings[%d] (%s).units: %d is not 0 (not known) to 99", i, b.ID, b.Units)
		}
		if b.Floors < 0 || b.Floors > 199 {
			return fmt.Errorf("buildings[%d] (%s).floors: %d is not 0 (not known) to 199", i, b.ID, b.Floors)
		}
	}
	for cat, list := range p.Choices {
		if !slices.Contains(event.Categories, cat) {
			return fmt.Errorf("report_choices: %q is not one of %v", cat, event.Categories)
		}
		for i, c := range list {
			for lang, s := range map[string]string{"zh": c.Zh, "en": c.En} {
				where := fmt.Sprintf("report_choices.%s[%d].%s", cat, i, lang)
				if strings.TrimSpace(s) == "" && lang == "zh" {
					return fmt.Errorf("%s: is required", where)
				}
				if utf8.RuneCountInString(s) > maxTitle {
					return fmt.Errorf("%s: longer than %d characters (a report title's limit)", where, maxTitle)
				}
				if err := event.ScreenText(where, s, false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Building finds a building by id.
func (p *Plan) Building(id string) (PlanBuilding, bool) {
	for _, b := range p.Buildings {
		if b.ID == id {
			return b, true
		}
	}
	return PlanBuilding{}, false
}

// CheckPlace refuses a report's building when the plan lists the site's
// buildings and it is not one of them, and its unit when the building's
// units (and floors) are known and the unit is not among them. unit is
// already normalised.
func (p *Plan) CheckPlace(building, unit string) error {
	if p == nil || len(p.Buildings) == 0 || building == "" {
		return nil // nothing to check against, or the event's validation names it
	}
	b, ok := p.Building(building)
	if !ok {
		ids := make([]string, len(p.Buildings))
		for i, b := range p.Buildings {
			ids[i] = b.ID
		}
		return httpx.BadRequest("building", "building %q is not one of this site's buildings (%s)", building, strings.Join(ids, ", "))
	}
	if b.Units == 0 || unit == "" {
		return nil
	}
	u, room, hasRoom := strings.Cut(unit, "-")
	n, err := strconv.Atoi(u)
	if err != nil || n < 1 || n > b.Units {
		return httpx.BadRequest("unit", "unit %q: building %s has units 1 to %d; write unit-room such as 1-402", unit, b.ID, b.Units)
	}
	if !hasRoom {
		return nil
	}
	r, err := strconv.Atoi(room)
	if err != nil || r < 101 || r%100 == 0 || (b.Floors > 0 && r/100 > b.Floors) {
		floors := "its floors"
		if b.Floors > 0 {
			floors = fmt.Sprintf("floors 1 to %d", b.Floors)
		}
		return httpx.BadRequest("unit", "unit %q: room %s is not a room of building %s (floor and door, such as 402 for floor 4, door 2; %s)", unit, room, b.ID, floors)
	}
	return nil
}
