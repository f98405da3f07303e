// Command linli-edge runs an edge agent: a lobby kiosk or a building's
// sensor gateway.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"linli/edge/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agent.Main(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
