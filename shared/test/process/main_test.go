package process

import (
	"fmt"
	"io"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// holderEnv makes the test binary a port holder for
// TestReservationHoldsAcrossProcesses instead of running the tests.
const holderEnv = "LINLI_TEST_PORT_HOLDER"

// Every goroutine a test starts must be gone when the tests end.
func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) != "" {
		holdPort()
	}
	goleak.VerifyTestMain(m)
}

// holdPort reserves a port, prints it and keeps it until its stdin ends.
func holdPort() {
	addr, err := FreeAddr()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
