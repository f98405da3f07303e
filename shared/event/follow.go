package event

import (
	"fmt"
	"regexp"
)

// KindReportReopen is the edge kind a kiosk records when a resident says a
// resolved report is still not fixed. Numbered apart from the other edge
// kinds so concurrent additions do not collide.
const KindReportReopen Kind = 24

// ReportReopen asks for a resolved report to be looked at again. The hub
// moves the report from resolved back to accepted when the reopen comes
// after the resolution in (HLC, device, seq) order, and ignores it
// otherwise; the kiosk decides whether the resident is still in time.
type ReportReopen struct {
	Report   string `cbor:"1,keyasint" json:"report"`
	Resident string `cbor:"2,keyasint,omitempty" json:"resident,omitempty"`
	Reason   string `cbor:"3,keyasint,omitempty" json:"reason,omitempty"`
}

// Kind is KindReportReopen.
func (*ReportReopen) Kind() Kind { return KindReportReopen }

// Validate checks a reopen.
func (b *ReportReopen) Validate() error {
	return first(
		refField("report", b.Report),
		optional(b.Resident, func() error { return idField("resident", b.Resident) }),
		text("reason", b.Reason, 0, 500),
	)
}

// reportNumber is a kiosk code (letters and digits, up to 8) and a
// counter of at least four digits.
var reportNumber = regexp.MustCompile(`^[A-Z0-9]{1,8}-[0-9]{4,10}$`)

// ValidNumber checks a short report number such as B1-0007.
func ValidNumber(n string) error {
	if !reportNumber.MatchString(n) {
		return fmt.Errorf("%q is not a report number such as B1-0007 (kiosk code of capital letters and digits, a dash, four or more digits)", n)
	}
	return nil
}

func numberField(name, v string) error {
	if err := ValidNumber(v); err != nil {
		return &FieldError{Field: name, Msg: err.Error()}
	}
	return nil
}

func init() {
	register(KindReportReopen, "report_reopen", func() Body { return new(ReportReopen) })
}
