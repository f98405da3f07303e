package gateway

import (
	"cmp"
	"slices"
	"time"

	"linli/shared/event"
)

// Alarm kinds a gateway raises itself (forced doors are access events).
const (
	AlarmSmoke = "smoke"
	AlarmHeat  = "heat"
	AlarmWater = "water"
)

// AlarmKey names one alarm of a gateway: its sensor and kind.
type AlarmKey struct {
	Sensor string
	Kind   string
}

// ActiveAlarm is an alarm in force.
type ActiveAlarm struct {
	AlarmKey
	Since time.Time
	Value float64
}

// Fire raises and clears the building's safety alarms: smoke and water
// from detector contacts, heat from temperature samples with hysteresis. It
// is pure: the caller passes each signal with its time. While a smoke or
// heat alarm is active the building's escape doors are released
// (Releasing); a water leak alarms without opening doors.
type Fire struct {
	building              string
	threshold, hysteresis float64

	active   map[AlarmKey]ActiveAlarm
	restored map[AlarmKey]bool // active before a restart, not seen again yet
	places   map[string]string // sensor → where it is, in words
}

// NewFire returns the fire rules of building: heat alarms at or above
// threshold °C and clear below threshold-hysteresis, so a reading that
// hovers at the threshold does not flap.
func NewFire(building string, threshold, hysteresis float64) *Fire {
	return &Fire{building: building, threshold: threshold, hysteresis: hysteresis,
		active: map[AlarmKey]ActiveAlarm{}, restored: map[AlarmKey]bool{}}
}

// WithPlaces names where each sensor is ("3号楼 1单元 楼道烟感"); every
// alarm carries its sensor's place so no screen has to show a sensor id.
func (f *Fire) WithPlaces(places map[string]string) *Fire {
	f.places = places
	return f
}

// Restore marks alarms that were active when the gateway last stopped.
// They count as active (doors stay released) until their sensor confirms
// them or Settle clears them: an alarm must not be lost, nor left open at
// the hub forever, because the gateway restarted.
func (f *Fire) Restore(keys []AlarmKey, at time.Time) {
	for _, k := range keys {
		if _, ok := f.active[k]; !ok {
			f.active[k] = ActiveAlarm{AlarmKey: k, Since: at}
			f.restored[k] = true
		}
	}
}

// Settle clears every restored alarm of a sensor the gateway polls itself
// (polled reports whether it does) that has not confirmed it since the
// restart; call it once those sensors have had time to report. An alarm of
// a sensor that reports over HTTP stays until that sensor clears it: the
// gateway cannot know when such a sensor will next speak.
func (f *Fire) Settle(polled func(sensor string) bool) []Record {
	var out []Record
	for _, k := range sortedAlarmKeys(f.restored) {
		if !polled(k.Sensor) {
			continue
		}
		delete(f.restored, k)
		out = append(out, f.set(k, false, 0, time.Time{})...)
	}
	return out
}

// Contact applies a smoke or water detector's transition.
func (f *Fire) Contact(sensor, kind string, alarm bool, at time.Time) []Record {
	v := 0.0
	if alarm {
		v = 1
	}
	return f.set(AlarmKey{Sensor: sensor, Kind: kind}, alarm, v, at)
}

// Temperature applies a temperature sample: a heat alarm from threshold
// up, cleared below threshold-hysteresis.
func (f *Fire) Temperature(sensor string, celsius float64, at time.Time) []Record {
	k := AlarmKey{Sensor: sensor, Kind: AlarmHeat}
	_, on := f.active[k]
	switch {
	case celsius >= f.threshold:
		return f.set(k, true, celsius, at)
	case on && celsius < f.threshold-f.hysteresis:
		return f.set(k, false, celsius, at)
	case on:
		// In the hysteresis band: still hot enough to stay in alarm, and
		// confirmed so a restart does not clear it.
		delete(f.restored, k)
	}
	return nil
}

// set moves an alarm to on or off and returns the alarm event if it
// changed. A sensor confirming a restored alarm changes nothing: its raise
// was recorded before the restart and reaches the hub from the outbox.
func (f *Fire) set(k AlarmKey, on bool, value float64, at time.Time) []Record {
	delete(f.restored, k)
	if _, was := f.active[k]; was == on {
		return nil
	}
	if on {
		f.active[k] = ActiveAlarm{AlarmKey: k, Since: at, Value: value}
	} else {
		delete(f.active, k)
	}
	return []Record{{Priority: true, Body: &event.Alarm{Sensor: k.Sensor, Type: k.Kind, Active: on,
		Building: f.building, Value: value, Place: f.places[k.Sensor]}}}
}

// Undo reverts the change a that set just returned, when it could not be
// recorded, so the sensor's next report raises (or clears) it again.
func (f *Fire) Undo(a *event.Alarm, at time.Time) {
	k := AlarmKey{Sensor: a.Sensor, Kind: a.Type}
	if a.Active {
		delete(f.active, k)
	} else {
		f.active[k] = ActiveAlarm{AlarmKey: k, Since: at, Value: a.Value}
	}
}

// Releasing reports whether escape doors must be released: a smoke or heat
// alarm is active.
func (f *Fire) Releasing() bool {
	for k := range f.active {
		if k.Kind == AlarmSmoke || k.Kind == AlarmHeat {
			return true
		}
	}
	return false
}

// Active lists the alarms in force, by sensor and kind.
func (f *Fire) Active() []ActiveAlarm {
	out := make([]ActiveAlarm, 0, len(f.active))
	for _, a := range f.active {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b ActiveAlarm) int { return compareAlarmKey(a.AlarmKey, b.AlarmKey) })
	return out
}

func compareAlarmKey(a, b AlarmKey) int {
	return cmp.Or(cmp.Compare(a.Sensor, b.Sensor), cmp.Compare(a.Kind, b.Kind))
}

func sortedAlarmKeys(m map[AlarmKey]bool) []AlarmKey {
	out := make([]AlarmKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, compareAlarmKey)
	return out
}
