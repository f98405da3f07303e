// Command linli-bench is the benchmark harness behind `make bench`: it runs
// the real binaries on loopback and prints each figure against a baseline
// measured in the same run (see shared/bench).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"linli/shared/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
