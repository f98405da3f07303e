package event

// ErasedPrefix starts every token that replaces an erased resident.
const ErasedPrefix = "erased-"

// Anonymise rewrites a body that names resident after a deletion request,
// returning the new body and whether anything changed. The resident's id
// becomes token (so counts stay right: one resident stays one); a report
// keeps its text, which is about a building, but loses its author; a
// rating loses its comment.
func Anonymise(b Body, resident, token string) (Body, bool) {
	switch b := b.(type) {
	case *Checkin:
		if b.Resident == resident {
			c := *b
			c.Resident = token
			return &c, true
		}
	case *Report:
		if b.Resident == resident {
			c := *b
			c.Resident = ""
			return &c, true
		}
	case *Vote:
		if b.Resident == resident {
			c := *b
			c.Resident = token
			return &c, true
		}
	case *Rating:
		if b.Resident == resident {
			c := *b
			c.Resident, c.Comment = token, ""
			return &c, true
		}
	case *Promote:
		if b.Resident == resident {
			c := *b
			c.Resident = token
			return &c, true
		}
	case *ReportReopen:
		if b.Resident == resident {
			c := *b
			c.Resident, c.Reason = "", ""
			return &c, true
		}
	}
	return b, false
}

// Residents lists the residents a body names.
func Residents(b Body) []string {
	switch b := b.(type) {
	case *Checkin:
		return []string{b.Resident}
	case *Report:
		if b.Resident != "" {
			return []string{b.Resident}
		}
	case *Vote:
		return []string{b.Resident}
	case *Rating:
		return []string{b.Resident}
	case *Promote:
		return []string{b.Resident}
	case *ReportReopen:
		if b.Resident != "" {
			return []string{b.Resident}
		}
	}
	return nil
}
