package store

import (
	"testing"

	"linli/shared/test/testkit"
)

// TestMain stops the tests' PostgreSQL (backend_test.go runs on both
// stores), then checks that every goroutine a test started is gone.
func TestMain(m *testing.M) { testkit.PostgresMain(m) }
