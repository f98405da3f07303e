package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"linli/shared/event"
)

func alarms(recs []Record) string {
	var out []string
	for _, r := range recs {
		a := r.Body.(*event.Alarm)
		s := a.Sensor + ":" + a.Type + "="
		if a.Active {
			s += "on"
		} else {
			s += "off"
		}
		if !r.Priority {
			s += "(not priority)"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestFireRules(t *testing.T) {
	// Signals: "smoke on", "water off", "heat 57.0", "settle".
	tests := []struct {
		name      string
		restored  []AlarmKey
		signals   []string
		want      string
		releasing bool
	}{
		{"smoke raises and clears", nil, []string{"smoke on", "smoke off"}, "S:smoke=on S:smoke=off", false},
		{"smoke in force releases", nil, []string{"smoke on"}, "S:smoke=on", true},
		{"a repeated raise is one alarm", nil, []string{"smoke on", "smoke on", "smoke off", "smoke off"}, "S:smoke=on S:smoke=off", false},
		{"a clear without a raise is nothing", nil, []string{"smoke off"}, "", false},
		{"water alarms but keeps doors locked", nil, []string{"water on"}, "W:water=on", false},
		{"below the threshold", nil, []string{"heat 56.9"}, "", false},
		{"at the threshold", nil, []string{"heat 57"}, "T:heat=on", true},
		{"hysteresis holds in the band", nil, []string{"heat 58", "heat 56", "heat 55.1", "heat 57.5"}, "T:heat=on", true},
		{"clears below the band", nil, []string{"heat 58", "heat 54.9", "heat 56.9"}, "T:heat=on T:heat=off", false},
		{"heat and smoke: released until both clear", nil, []string{"heat 60", "smoke on", "heat 20"}, "T:heat=on S:smoke=on T:heat=off", true},
		{"restored and confirmed stays, no new raise", []AlarmKey{{"S", "smoke"}}, []string{"smoke on", "settle"}, "", true},
		{"restored and not confirmed clears on settling", []AlarmKey{{"S", "smoke"}}, []string{"settle"}, "S:smoke=off", false},
		{"restored heat confirmed within the band", []AlarmKey{{"T", "heat"}}, []string{"heat 56", "settle"}, "", true},
		{"restored heat cooled down", []AlarmKey{{"T", "heat"}}, []string{"heat 30"}, "T:heat=off", false},
		{"restored alarms release doors until settled", []AlarmKey{{"S", "smoke"}}, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFire("B3", 57, 2)
			f.Restore(tt.restored, t0)
			var recs []Record
			for i, s := range tt.signals {
				at := t0.Add(time.Duration(i) * time.Second)
				var what string
				var v float64
				if _, err := fmt.Sscan(s, &what); err != nil {
					t.Fatal(err)
				}
				switch what {
				case "smoke", "water":
					recs = append(recs, f.Contact(strings.ToUpper(what[:1]), what, strings.HasSuffix(s, "on"), at)...)
				case "heat":
					if _, err := fmt.Sscan(s[5:], &v); err != nil {
						t.Fatal(err)
					}
					recs = append(recs, f.Temperature("T", v, at)...)
				case "settle":
					recs = append(recs, f.Settle(func(string) bool { return true })...)
				}
			}
			if got := alarms(recs); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if f.Releasing() != tt.releasing {
				t.Fatalf("releasing %v, want %v", f.Releasing(), tt.releasing)
			}
			for _, r := range recs {
				if err := r.Body.Validate(); err != nil || r.Body.(*event.Alarm).Building != "B3" {
					t.Fatalf("%+v: %v", r.Body, err)
				}
			}
		})
	}
}

func TestFireActive(t *testing.T) {
	f := NewFire("B3", 57, 2)
	f.Contact("W", "water", true, t0)
	f.Temperature("T", 61.5, t0.Add(time.Second))
	got := f.Active()
	if len(got) != 2 || got[0].Sensor != "T" || got[0].Value != 61.5 || got[1].Sensor != "W" || !got[1].Since.Equal(t0) {
		t.Fatalf("active %+v", got)
	}
}

// After a restart, settling clears a restored alarm of a sensor the
// gateway polls and has not heard again, but keeps one of a sensor that
// reports over HTTP (it may not post again for a long time): its escape
// doors stay released until it posts 0.
func TestSettleKeepsAlarmsOfSensorsThatPost(t *testing.T) {
	f := NewFire("B3", 57, 2)
	f.Restore([]AlarmKey{{Sensor: "wired", Kind: AlarmSmoke}, {Sensor: "bridge", Kind: AlarmSmoke}}, t0)
	recs := f.Settle(func(sensor string) bool { return sensor == "wired" })
	if len(recs) != 1 || recs[0].Body.(*event.Alarm).Sensor != "wired" || recs[0].Body.(*event.Alarm).Active {
		t.Fatalf("settle recorded %+v, want the wired alarm cleared alone", recs)
	}
	if got := f.Active(); len(got) != 1 || got[0].Sensor != "bridge" || !f.Releasing() {
		t.Fatalf("after settling: active %+v releasing %v, want the posted alarm kept and doors released", got, f.Releasing())
	}
	if recs := f.Contact("bridge", AlarmSmoke, false, t0.Add(time.Minute)); len(recs) != 1 || f.Releasing() {
		t.Fatalf("the bridge posts 0: %+v releasing %v", recs, f.Releasing())
	}
}
