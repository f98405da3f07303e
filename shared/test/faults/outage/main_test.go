package outage

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the test starts must be gone when it ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// long is set by `make faults`, as for the rest of the fault suite.
var long = os.Getenv("LINLI_FAULTS") == "long"

// scale picks the short (go test) or long (make faults) figure.
func scale[T any](short, lng T) T {
	if long {
		return lng
	}
	return short
}

// result logs the scenario's figures on a RESULT line, as the fault
// suite's scenarios do (docs/reliability.md's numbers come from them).
func result(t *testing.T, scenario string, format string, args ...any) {
	t.Helper()
	t.Logf("RESULT %s (%s): %s", scenario, scale("short", "long"), fmt.Sprintf(format, args...))
}
