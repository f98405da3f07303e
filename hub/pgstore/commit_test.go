package pgstore

import (
	"testing"
	"time"
)

// The client's bound follows a statement_timeout the URL sets, in any of
// PostgreSQL's units; none, zero (off) or one it cannot read leaves the
// default.
func TestClientTimeout(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", DefaultTimeout},
		{"1500", 1500 * time.Millisecond},
		{"250ms", 250 * time.Millisecond},
		{"5s", 5 * time.Second},
		{"2 min", 2 * time.Minute},
		{"1h", time.Hour},
		{"0", DefaultTimeout},
		{"soon", DefaultTimeout},
		{"5 fortnights", DefaultTimeout},
	} {
		params := map[string]string{}
		if tc.v != "" {
			params["statement_timeout"] = tc.v
		}
		if got := clientTimeout(params); got != tc.want {
			t.Errorf("statement_timeout %q: client timeout %v, want %v", tc.v, got, tc.want)
		}
	}
}
