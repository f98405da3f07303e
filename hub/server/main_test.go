package server

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"linli/shared/test/testkit"
)

// TestMain stops the tests' PostgreSQL, then checks that every goroutine a
// test started is gone.
func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopPostgres()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
