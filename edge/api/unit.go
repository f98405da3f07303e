package api

import (
	"regexp"
	"strings"
)

// unitForms are the ways residents write a unit and room: 1单元402室,
// 1-402, 1 402, 1/402, 1#402, a room alone (402), a unit alone (1单元).
var (
	unitRoom = regexp.MustCompile(`^(\d{1,2})\s*(?:单元|[-_/#.\s])\s*(\d{1,5})\s*(?:室|号)?$`)
	roomOnly = regexp.MustCompile(`^(\d{1,5})\s*(?:室|号)?$`)
	unitOnly = regexp.MustCompile(`^(\d{1,2})\s*单元$`)
)

// NormalizeUnit writes a unit as the site stores it: unit and room joined
// by "-" ("1单元402", "1-402", "1 402", "１－４０２" → "1-402"), a room or a
// unit alone as its number. Text in no such form is returned trimmed, for
// the event's validation to judge (a building may number its own way:
// "A-3"). Empty stays empty.
func NormalizeUnit(s string) string {
	s = strings.TrimSpace(halfWidth(s))
	if m := unitRoom.FindStringSubmatch(s); m != nil {
		return trimZeros(m[1]) + "-" + m[2]
	}
	if m := roomOnly.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	if m := unitOnly.FindStringSubmatch(s); m != nil {
		return trimZeros(m[1])
	}
	return s
}

// halfWidth maps full-width digits, letters and separators (what a
// Chinese input method types) and the dashes that look like "-" to ASCII.
func halfWidth(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= '！' && r <= '～':
			return r - '！' + '!'
		case r == '\u3000':
			return ' '
		case r == '—' || r == '–' || r == '−':
			return '-'
		}
		return r
	}, s)
}

func trimZeros(s string) string {
	if t := strings.TrimLeft(s, "0"); t != "" {
		return t
	}
	return s
}
