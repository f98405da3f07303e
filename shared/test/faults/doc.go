// Package faults is Linli's fault suite: process-level tests that crash,
// cut, fill and skew an edge, its broker and its hub, and check with the
// testkit's exactly-once Ledger that nothing answered 2xx is lost or
// duplicated. `go test` runs a bounded short form; LINLI_FAULTS=long (what
// `make faults` sets) runs the long one.
package faults
