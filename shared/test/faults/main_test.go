package faults

import (
	"testing"

	"linli/shared/test/testkit"
)

// Every goroutine a test starts in this process (proxies, clients, the
// browser's connection, process watchers) must be gone when the tests end,
// and the PostgreSQL server the hub-side scenarios use is stopped.
func TestMain(m *testing.M) {
	testkit.PostgresMain(m)
}
