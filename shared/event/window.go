package event

// What a check-in is, by when it happens in the activity's life: a
// sign-up (报名) takes a seat ahead of time, attendance (到场签到) is being
// there, and after the end there is nothing left to check in to.
const (
	ActSignup     = "signup"
	ActAttendance = "attendance"
	ActEnded      = "ended"
)

// CheckinActs are the acts a check-in event may record.
var CheckinActs = []string{ActSignup, ActAttendance}

const (
	// DefaultCheckinOpens is how many minutes before its start an
	// activity's attendance check-in opens, unless the activity says.
	DefaultCheckinOpens = 60
	// MaxCheckinOpens bounds the setting: a week.
	MaxCheckinOpens = 7 * 24 * 60
)

// Window is when attendance check-in is open: from Opens to End (Unix
// milliseconds; Opens 0: from the first moment, End 0: no end).
type Window struct {
	Opens, End int64
}

// Window returns the activity's attendance window. An activity without a
// start has no sign-up period: every check-in before its end is
// attendance.
func (b *ActivitySet) Window() Window {
	w := Window{End: b.End}
	if b.Start > 0 {
		opens := int64(DefaultCheckinOpens)
		if b.CheckinOpens != nil {
			opens = int64(*b.CheckinOpens)
		}
		w.Opens = max(0, b.Start-opens*60_000)
	}
	return w
}

// Act tells what a check-in at ms (Unix milliseconds) is: ActSignup before
// the window, ActAttendance inside it, ActEnded at or after the end.
func (w Window) Act(ms int64) string {
	switch {
	case w.End > 0 && ms >= w.End:
		return ActEnded
	case ms < w.Opens:
		return ActSignup
	}
	return ActAttendance
}

// Clamp limits the span [from, to) to the window and returns its length
// in milliseconds (0 when they do not overlap).
func (w Window) Clamp(from, to int64) int64 {
	from = max(from, w.Opens)
	if w.End > 0 {
		to = min(to, w.End)
	}
	return max(0, to-from)
}
