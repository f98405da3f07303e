package event

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestValidateHubKinds(t *testing.T) {
	tests := []struct {
		name  string
		body  Body
		field string // "" means valid
	}{
		{"release ok", &Release{Activity: "A1", Granted: 5, Used: 3, Returned: 2}, ""},
		{"release nothing used", &Release{Activity: "A1", Granted: 5, Returned: 5}, ""},
		{"release returns too much", &Release{Activity: "A1", Granted: 2, Returned: 3}, "returned"},
		{"release no activity", &Release{Granted: 1}, "activity"},
		{"activity ok", &ActivitySet{ID: "A1", Title: "义诊", Type: "volunteer", Site: "S1", Start: 1, End: 2, Capacity: 30}, ""},
		{"activity no limit", &ActivitySet{ID: "A1", Title: "t", Type: "culture", Site: "S1"}, ""},
		{"activity bad kind", &ActivitySet{ID: "A1", Title: "t", Type: "party", Site: "S1"}, "kind"},
		{"activity no site", &ActivitySet{ID: "A1", Title: "t", Type: "activity"}, "site"},
		{"activity ends first", &ActivitySet{ID: "A1", Title: "t", Type: "activity", Site: "S1", Start: 5, End: 4}, "end"},
		{"activity huge", &ActivitySet{ID: "A1", Title: "t", Type: "activity", Site: "S1", Capacity: 1 << 21}, "capacity"},
		{"notice ok", &NoticeSet{ID: "N1", Site: "S1", Buildings: []string{"B1"}, Title: "t", Category: "finance"}, ""},
		{"notice bad category", &NoticeSet{ID: "N1", Site: "S1", Title: "t", Category: "gossip"}, "category"},
		{"notice bad building", &NoticeSet{ID: "N1", Site: "S1", Title: "t", Category: "safety", Buildings: []string{"B 1"}}, "buildings"},
		{"notice long body", &NoticeSet{ID: "N1", Site: "S1", Title: "t", Category: "safety", Body: strings.Repeat("x", 4001)}, "body"},
		{"patch ok", &ReportPatch{Report: "k1.1", Status: ReportAccepted, Who: "op1"}, ""},
		{"patch note only", &ReportPatch{Report: "k1.1", Note: "n", Who: "op1"}, ""},
		{"patch empty", &ReportPatch{Report: "k1.1", Who: "op1"}, "status"},
		{"patch bad status", &ReportPatch{Report: "k1.1", Status: "done", Who: "op1"}, "status"},
		{"patch no operator", &ReportPatch{Report: "k1.1", Status: ReportResolved}, "who"},
		{"grant ok", &Grant{Activity: "A1", Kiosk: "k1", Seats: 8}, ""},
		{"grant zero", &Grant{Activity: "A1", Kiosk: "k1"}, "seats"},
		{"recall ok", &Recall{Activity: "A1", Kiosk: "k1", Granted: 8}, ""},
		{"recall zero", &Recall{Activity: "A1", Kiosk: "k1"}, "granted"},
		{"promote ok", &Promote{Activity: "A1", Resident: "R1", From: "k1.7"}, ""},
		{"promote reserve", &Promote{Activity: "A1", Resident: "R1", From: PromoteReserve}, ""},
		{"promote bad from", &Promote{Activity: "A1", Resident: "R1", From: "k1"}, "from"},
		{"ack ok", &AlarmAck{Site: "S1", Source: "B3-smoke-1", Type: "smoke", Who: "op1"}, ""},
		{"clear bad kind", &AlarmClear{Site: "S1", Source: "B3-smoke-1", Type: "fire", Who: "op1"}, "kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.body.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate() = %v, want a FieldError on %q", err, tt.field)
			}
		})
	}
}

func TestHubKindsRoundTrip(t *testing.T) {
	bodies := []Body{
		&Release{Activity: "A1", Granted: 5, Used: 3, Returned: 2},
		&ActivitySet{ID: "A1", Title: "t", Type: "activity", Site: "S1", Capacity: 3},
		&NoticeSet{ID: "N1", Site: "S1", Title: "t", Category: "election", Expires: 9},
		&ReportPatch{Report: "k1.1", Status: ReportInProgress, Assignee: "王师傅", Who: "op1"},
		&Grant{Activity: "A1", Kiosk: "k1", Seats: 2},
		&Recall{Activity: "A1", Kiosk: "k1", Granted: 2},
		&Promote{Activity: "A1", Resident: "R1", From: "k1.2"},
		&AlarmAck{Site: "S1", Source: "d1", Type: "forced", Who: "op1"},
		&AlarmClear{Site: "S1", Source: "d1", Type: "forced", Who: "op1", Note: "door fixed"},
	}
	for _, b := range bodies {
		name := b.Kind().String()
		if strings.HasPrefix(name, "kind(") {
			t.Fatalf("kind %d has no name", b.Kind())
		}
		if k, ok := ParseKind(name); !ok || k != b.Kind() {
			t.Fatalf("ParseKind(%q) = %d, %v", name, k, ok)
		}
		if b.Kind().IsHub() == (b.Kind() == KindRelease) {
			t.Fatalf("%s: IsHub = %v", name, b.Kind().IsHub())
		}
		ev, err := NewEvent("hub", 1, 1, b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ev.Decode()
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !reflect.DeepEqual(got, b) {
			t.Fatalf("%s: round trip gave %+v, want %+v", name, got, b)
		}
	}
}
