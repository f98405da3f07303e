package replica

import (
	"time"

	"linli/shared/merge"
)

// The views of the replicated state an edge serves: the hub's views
// (shared/merge) as decoded from the replica, with what the edge adds
// (its own answers, times in JSON's form). They are the types of the
// edge API's reads, so the compiler checks what serves and what reads
// them.

// Notice is a notice as an edge serves it (GET /api/v1/notices).
type Notice struct {
	merge.NoticeView
	Alarm   bool       `json:"alarm"`
	Expires *time.Time `json:"expires_at,omitempty"`
	Time    time.Time  `json:"time"`
}

// Activity is an activity as an edge serves it (GET /api/v1/activities),
// with the asking resident's standing.
type Activity struct {
	ID        string     `json:"id"`
	Title     string     `json:"title"`
	Kind      string     `json:"kind"`
	Start     *time.Time `json:"start,omitempty"`
	End       *time.Time `json:"end,omitempty"`
	Capacity  uint32     `json:"capacity"`
	SeatsLeft uint32     `json:"seats_left"`
	Confirmed int        `json:"confirmed"`
	Waitlist  int        `json:"waitlisted"`
	// Share is the seats the hub has given this kiosk to confirm with on
	// its own (cumulative); 0 until the grant arrives.
	Share uint32 `json:"share"`
	// Status is the resident's state: confirmed, waitlisted, recorded (the
	// hub will decide) or "" (not checked in). Synced is false while it is
	// only this kiosk's answer.
	Status string `json:"status,omitempty"`
	Synced bool   `json:"synced,omitempty"`
	// Act is what a check-in now would be: signup (报名) before the
	// check-in window, attendance (签到) inside it, ended after the end.
	Act string `json:"act"`
	// CheckinOpens is when attendance check-in opens.
	CheckinOpens *time.Time `json:"checkin_opens,omitempty"`
	// Attended: the resident checked in inside the window (they may rate
	// the activity).
	Attended bool `json:"attended,omitempty"`
	// Where and what, as the office wrote it; Cancelled: the office
	// called it off (residents who signed up see it marked so).
	Venue       string `json:"venue,omitempty"`
	Description string `json:"description,omitempty"`
	Cancelled   bool   `json:"cancelled,omitempty"`
}

// Report is a report as an edge serves it (GET /api/v1/reports); Synced
// is false for one filed here that the hub has not answered for yet.
type Report struct {
	merge.ReportView
	Synced  bool      `json:"synced"`
	Updated time.Time `json:"updated_at"`
}
