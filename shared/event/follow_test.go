package event

import (
	"errors"
	"slices"
	"testing"
)

func TestReportNumberAndReopenValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  Body
		field string // "" when valid
	}{
		{"numbered report", &Report{Category: "noise", Title: "t", Building: "B1", Number: "B1-0007"}, ""},
		{"report without number", &Report{Category: "noise", Title: "t", Building: "B1"}, ""},
		{"lower-case code", &Report{Category: "noise", Title: "t", Building: "B1", Number: "b1-0007"}, "number"},
		{"short counter", &Report{Category: "noise", Title: "t", Building: "B1", Number: "B1-7"}, "number"},
		{"no dash", &Report{Category: "noise", Title: "t", Building: "B1", Number: "B10007"}, "number"},
		{"reopen", &ReportReopen{Report: "kiosk-b1.7", Resident: "R1", Reason: "还是坏的"}, ""},
		{"reopen, no report", &ReportReopen{Resident: "R1"}, "report"},
		{"reopen, bad resident", &ReportReopen{Report: "kiosk-b1.7", Resident: "R 1"}, "resident"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.body.Validate()
			var fe *FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// A deletion request takes the resident and their words out of a reopen.
func TestAnonymiseReopen(t *testing.T) {
	b := &ReportReopen{Report: "kiosk-b1.7", Resident: "R1", Reason: "我家门口"}
	if got := Residents(b); !slices.Equal(got, []string{"R1"}) {
		t.Fatalf("Residents = %v", got)
	}
	nb, changed := Anonymise(b, "R1", "erased-x")
	r := nb.(*ReportReopen)
	if !changed || r.Resident != "" || r.Reason != "" || r.Report != "kiosk-b1.7" {
		t.Fatalf("Anonymise = %+v, %v", r, changed)
	}
	if b.Resident != "R1" {
		t.Fatal("Anonymise changed its input")
	}
}
