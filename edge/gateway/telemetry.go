package gateway

import (
	"math"
	"time"

	"linli/shared/event"
)

// Telemetry decides which samples become readings: the first of each sensor
// and kind, then only those that moved by at least the kind's deadband from
// the last one recorded, or after heartbeat without one, so a quiet
// building adds little to the backlog and the hub still sees every sensor
// alive. It is pure: the caller passes the time.
//
// The comparison is with the last value recorded, not the last sampled,
// so a slow drift is recorded once it adds up to the deadband.
type Telemetry struct {
	building  string
	deadband  map[string]float64 // by reading kind
	heartbeat time.Duration      // 0: no heartbeat
	last      map[telemetryKey]recorded
}

type telemetryKey struct{ sensor, kind string }

type recorded struct {
	value float64
	at    time.Time
}

// NewTelemetry returns telemetry rules for building with a deadband per
// reading kind (a kind not in the map records every change).
func NewTelemetry(building string, deadband map[string]float64, heartbeat time.Duration) *Telemetry {
	return &Telemetry{building: building, deadband: deadband, heartbeat: heartbeat, last: map[telemetryKey]recorded{}}
}

// Sample offers one sample and returns the reading to record, if any.
// Values are rounded to 0.01, the resolution the sensors have.
func (t *Telemetry) Sample(sensor, kind string, value float64, at time.Time) []Record {
	value = math.Round(value*100) / 100
	k := telemetryKey{sensor, kind}
	last, seen := t.last[k]
	// The epsilon keeps float rounding (22.3-21.8 = 0.4999…) from hiding a
	// move of exactly one deadband.
	moved := !seen || math.Abs(value-last.value) >= max(t.deadband[kind], 0.01)-1e-9
	due := seen && t.heartbeat > 0 && !at.Before(last.at.Add(t.heartbeat))
	if !moved && !due {
		return nil
	}
	t.last[k] = recorded{value: value, at: at}
	return []Record{{Body: &event.Reading{Sensor: sensor, Type: kind, Value: value, Building: t.building}}}
}

// Last returns the last value recorded for a sensor and kind.
func (t *Telemetry) Last(sensor, kind string) (float64, time.Time, bool) {
	r, ok := t.last[telemetryKey{sensor, kind}]
	return r.value, r.at, ok
}
