package state

import (
	"testing"

	"linli/shared/event"
)

// Only forced and held-open doors among access events are facts the merge
// folds (both are alarms); the
// cheap check on the raw body must agree with the decoded result.
func TestIsFact(t *testing.T) {
	tests := []struct {
		name string
		body event.Body
		want bool
	}{
		{"granted", &event.Access{Door: "B1-main", Credential: "h:0011223344556677", Result: "granted"}, false},
		{"forced", &event.Access{Door: "B1-main", Result: "forced"}, true},
		{"forced door name, granted", &event.Access{Door: "forced", Result: "granted", Building: "forced"}, false},
		{"held open", &event.Access{Door: "B1-main", Result: "held_open"}, true},
		{"held_open door name, closed", &event.Access{Door: "held_open", Result: "close"}, false},
		{"reading", &event.Reading{Sensor: "forced", Type: "temperature", Value: 20}, false},
		{"check-in", &event.Checkin{Resident: "R1", Activity: "A1", Action: "in"}, true},
		{"report", &event.Report{Category: "noise", Title: "t", Building: "B1"}, true},
	}
	for _, tt := range tests {
		ev, err := event.NewEvent("gw-1", 1, 1, tt.body)
		if err != nil {
			t.Fatal(err)
		}
		if got := isFact(&ev); got != tt.want {
			t.Errorf("%s: isFact = %v, want %v", tt.name, got, tt.want)
		}
	}
}
