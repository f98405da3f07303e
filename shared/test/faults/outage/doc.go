// Package outage is the fault suite's long outage (scenario 5 of
// shared/test/faults): a gateway records a backlog of hundreds of
// thousands of events while the hub is unreachable, then drains it. It is
// a package of its own because it is the suite's longest scenario by far
// and nearly all of it is the edge's CPU: `go test ./...` starts a package
// as soon as a slot is free, where a parallel test of the fault package
// started only once the package's serial tests were done and a slot of
// its parallel ones came free, minutes into make test.
package outage
