package agent

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"linli/shared/opstatus"
)

// statusMain is `linli-edge status`: a summary of a running edge for
// people, from its /api/v1/sync and /readyz. Exit 0 when the edge
// answered, 1 (one line on stderr) when not, 2 for bad flags.
func statusMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("linli-edge status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := "http://127.0.0.1:8081"
	if v := os.Getenv("LINLI_EDGE"); v != "" {
		def = v
	}
	edge := fs.String("edge", def, "the running edge's HTTP URL")
	watch := fs.Bool("watch", false, "refresh until interrupted (a progress bar while a backlog drains)")
	every := fs.Duration("interval", 2*time.Second, "refresh interval with --watch")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "linli-edge status: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	c := &opstatus.Client{Base: *edge}
	interval := time.Duration(0)
	if *watch {
		interval = max(*every, 100*time.Millisecond)
	}
	err := opstatus.Run(ctx, stdout, interval, func(ctx context.Context) (string, error) {
		return edgeStatus(ctx, c, time.Now())
	})
	if err != nil {
		fmt.Fprintf(stderr, "linli-edge status: cannot reach the edge at %s: %v\n", *edge, err)
		return 1
	}
	return 0
}

type edgeSync struct {
	Connected        bool       `json:"connected"`
	Pending          uint64     `json:"pending"`
	LastSeq          uint64     `json:"last_seq"`
	AckedSeq         uint64     `json:"acked_seq"`
	LastSync         *time.Time `json:"last_sync"`
	OldestPending    *time.Time `json:"oldest_pending"`
	DiskFreeBytes    *uint64    `json:"disk_free_bytes"`
	DiskReserveBytes *uint64    `json:"disk_reserve_bytes"`
	DiskRefusing     *string    `json:"disk_refusing"`
}

// edgeStatus renders one frame.
func edgeStatus(ctx context.Context, c *opstatus.Client, now time.Time) (string, error) {
	rd, err := c.Ready(ctx)
	if err != nil {
		return "", err
	}
	var s edgeSync
	if err := c.JSON(ctx, "/api/v1/sync", &s); err != nil {
		return "", err
	}
	var b strings.Builder
	state := "ready"
	if !rd.Ready {
		state = "NOT READY: " + strings.Join(rd.Reasons, "; ")
	}
	fmt.Fprintf(&b, "edge %s  %s\n", c.Base, state)
	for _, w := range rd.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", w)
	}
	conn := "no"
	if s.Connected {
		conn = "yes"
	}
	var last, oldest time.Time
	if s.LastSync != nil {
		last = *s.LastSync
	}
	if s.OldestPending != nil {
		oldest = *s.OldestPending
	}
	fmt.Fprintf(&b, "connected: %s\n", conn)
	fmt.Fprintf(&b, "last sync: %s\n", opstatus.When(last, now))
	fmt.Fprintf(&b, "pending: %d  last_seq %d  acked_seq %d\n", s.Pending, s.LastSeq, s.AckedSeq)
	if s.Pending > 0 {
		fmt.Fprintf(&b, "oldest unsynced record: %s\n", opstatus.When(oldest, now))
		fmt.Fprintf(&b, "sync %s  %d of %d acked\n", opstatus.Bar(s.AckedSeq, s.LastSeq, 30), s.AckedSeq, s.LastSeq)
	}
	switch {
	case s.DiskRefusing != nil && *s.DiskRefusing != "":
		fmt.Fprintf(&b, "disk guard: REFUSING writes: %s\n", *s.DiskRefusing)
	case s.DiskFreeBytes != nil && s.DiskReserveBytes != nil:
		fmt.Fprintf(&b, "disk guard: accepting writes, %s free, %s reserve\n", opstatus.Bytes(*s.DiskFreeBytes), opstatus.Bytes(*s.DiskReserveBytes))
	default:
		fmt.Fprintln(&b, "disk guard: unknown (an older edge)")
	}
	return b.String(), nil
}
