// Command linli-hub runs the hub: embedded MQTT broker, ingest and merge,
// operator API and dashboard.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"linli/hub/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := server.Main(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
