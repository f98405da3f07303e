package gateway

import (
	"testing"
	"time"

	"linli/shared/event"
)

func TestTelemetryDeadband(t *testing.T) {
	type sample struct {
		s    int // seconds after t0
		kind string
		v    float64
	}
	tests := []struct {
		name    string
		samples []sample
		want    []float64 // values recorded
	}{
		{"first sample is recorded", []sample{{0, "temperature", 22.5}}, []float64{22.5}},
		{"small moves are held back", []sample{{0, "temperature", 22.5}, {5, "temperature", 22.7}, {10, "temperature", 22.3}}, []float64{22.5}},
		{"a move of one deadband is recorded", []sample{{0, "temperature", 22.5}, {5, "temperature", 23.0}}, []float64{22.5, 23}},
		{"float rounding does not hide a deadband", []sample{{0, "temperature", 21.8}, {5, "temperature", 22.3}}, []float64{21.8, 22.3}},
		{"a slow drift adds up", []sample{{0, "temperature", 22.0}, {5, "temperature", 22.2}, {10, "temperature", 22.4}, {15, "temperature", 22.6}}, []float64{22, 22.6}},
		{"each kind has its deadband", []sample{{0, "humidity", 45}, {5, "humidity", 46.5}, {10, "humidity", 47}}, []float64{45, 47}},
		{"heartbeat records a still value", []sample{{0, "temperature", 22.5}, {899, "temperature", 22.5}, {900, "temperature", 22.5}}, []float64{22.5, 22.5}},
		{"values are rounded to the sensor's resolution", []sample{{0, "temperature", 22.4999999}}, []float64{22.5}},
		{"contacts record every change", []sample{{0, "smoke", 0}, {1, "smoke", 1}, {2, "smoke", 1}, {3, "smoke", 0}}, []float64{0, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := NewTelemetry("B3", map[string]float64{"temperature": 0.5, "humidity": 2, "smoke": 0.5}, 15*time.Minute)
			var got []float64
			for _, s := range tt.samples {
				for _, r := range tel.Sample("S", s.kind, s.v, t0.Add(time.Duration(s.s)*time.Second)) {
					rd := r.Body.(*event.Reading)
					if err := rd.Validate(); err != nil || rd.Building != "B3" || r.Priority {
						t.Fatalf("reading %+v (priority %v): %v", rd, r.Priority, err)
					}
					got = append(got, rd.Value)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("recorded %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("recorded %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestTelemetrySensorsApart(t *testing.T) {
	tel := NewTelemetry("B3", map[string]float64{"temperature": 0.5}, 0)
	tel.Sample("A", "temperature", 20, t0)
	if recs := tel.Sample("B", "temperature", 20.1, t0); len(recs) != 1 {
		t.Fatal("a second sensor's first sample was held back by the first sensor's value")
	}
	if recs := tel.Sample("A", "temperature", 20, t0.Add(1000*time.Hour)); len(recs) != 0 {
		t.Fatal("heartbeat 0 recorded a still value")
	}
	if v, at, ok := tel.Last("B", "temperature"); !ok || v != 20.1 || !at.Equal(t0) {
		t.Fatalf("Last = %v %v %v", v, at, ok)
	}
}
