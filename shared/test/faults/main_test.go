package faults

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts in this process (proxies, clients, the
// browser's connection, process watchers) must be gone when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
