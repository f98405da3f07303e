package retention

import (
	"testing"

	"linli/shared/test/testkit"
)

// TestMain stops the tests' PostgreSQL, then checks that every goroutine a
// test started is gone.
func TestMain(m *testing.M) { testkit.PostgresMain(m) }
