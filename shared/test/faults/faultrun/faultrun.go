// Package faultrun is what every fault scenario shares, in
// shared/test/faults and its packages of their own: the short or long
// form (`make faults` sets LINLI_FAULTS=long) and the RESULT line
// docs/reliability.md's figures come from
// (`go test -v ./shared/test/faults/... | grep RESULT`).
package faultrun

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Long is set by `make faults`: more kills, cycles and events.
var Long = os.Getenv("LINLI_FAULTS") == "long"

// Scale picks the short (go test) or long (make faults) figure.
func Scale[T any](short, long T) T {
	if Long {
		return long
	}
	return short
}

// Result logs one scenario's figures on a RESULT line; a subtest run on
// PostgreSQL says so.
func Result(t testing.TB, scenario string, format string, args ...any) {
	t.Helper()
	if strings.HasSuffix(t.Name(), "/postgres") {
		scenario += ", hub on PostgreSQL"
	}
	t.Logf("RESULT %s (%s): %s", scenario, Scale("short", "long"), fmt.Sprintf(format, args...))
}
