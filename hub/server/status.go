package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"linli/shared/opstatus"
)

// statusMain is `linli-hub status`: a summary of a running hub for
// people, from its HTTP API and /metrics. Exit 0 when the hub answered,
// 1 (one line on stderr) when not, 2 for bad flags.
func statusMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("linli-hub status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hub := fs.String("hub", envOr("LINLI_HUB", "http://127.0.0.1:8080"), "the running hub's HTTP URL")
	data := fs.String("data", envOr("LINLI_DATA", "./data/hub"), "the hub's data dir (its admin.token and site CA, when readable)")
	tokenFile := fs.String("token-file", "", "file holding an API token (default: <data>/admin.token when readable); without one devices are listed as an anonymous caller sees them")
	watch := fs.Bool("watch", false, "refresh until interrupted")
	every := fs.Duration("interval", 2*time.Second, "refresh interval with --watch")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "linli-hub status: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	c := &opstatus.Client{Base: *hub, HTTP: hubClient(*data)}
	file := *tokenFile
	if file == "" {
		file = filepath.Join(*data, "admin.token")
	}
	if b, err := os.ReadFile(file); err == nil {
		c.Token = strings.TrimSpace(string(b))
	} else if *tokenFile != "" {
		fmt.Fprintf(stderr, "linli-hub status: bad setting \"token-file\": %v\n", err)
		return 2
	}
	interval := time.Duration(0)
	if *watch {
		interval = max(*every, 100*time.Millisecond)
	}
	err := opstatus.Run(ctx, stdout, interval, func(ctx context.Context) (string, error) {
		return hubStatus(ctx, c, time.Now())
	})
	if err != nil {
		fmt.Fprintf(stderr, "linli-hub status: cannot reach the hub at %s: %v\n", *hub, err)
		return 1
	}
	return 0
}

// hubClient trusts the hub's own site CA when the data dir holds it (an
// https:// hub with certificates it issued).
func hubClient(data string) *http.Client {
	caPEM, err := os.ReadFile(filepath.Join(data, "pki", "ca.pem"))
	if err != nil {
		return &http.Client{}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

type statusDevice struct {
	ID       string     `json:"id"`
	Site     string     `json:"site"`
	Role     string     `json:"role"`
	Online   bool       `json:"online"`
	LastSeen *time.Time `json:"last_seen"`
	AckedSeq uint64     `json:"acked_seq"`
	Received uint64     `json:"received"`
	Backlog  uint64     `json:"backlog"`
	LastSeq  uint64     `json:"last_seq"`
	Oldest   *time.Time `json:"oldest_unsynced"`
	Revoked  bool       `json:"revoked"`
}

// hubStatus renders one frame.
func hubStatus(ctx context.Context, c *opstatus.Client, now time.Time) (string, error) {
	rd, err := c.Ready(ctx)
	if err != nil {
		return "", err
	}
	var devs []statusDevice
	if err := c.JSON(ctx, "/api/v1/devices", &devs); err != nil {
		return "", err
	}
	m, err := c.Metrics(ctx)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	state := "ready"
	if !rd.Ready {
		state = "NOT READY: " + strings.Join(rd.Reasons, "; ")
	}
	fmt.Fprintf(&b, "hub %s  %s\n", c.Base, state)
	for _, w := range rd.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", w)
	}
	online := 0
	var backlog uint64
	var oldest time.Time
	for _, d := range devs {
		if d.Online {
			online++
		}
		backlog += d.Backlog
		if d.Oldest != nil && (oldest.IsZero() || d.Oldest.Before(oldest)) {
			oldest = *d.Oldest
		}
	}
	fmt.Fprintf(&b, "devices: %d/%d online, backlog %d events\n", online, len(devs), backlog)
	if !oldest.IsZero() {
		fmt.Fprintf(&b, "oldest unsynced record: %s\n", opstatus.When(oldest, now))
	}
	if len(devs) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  DEVICE\tSITE\tROLE\tSTATE\tRECEIVED\tACKED\tBACKLOG\tLAST SEEN")
		for _, d := range devs {
			st := "offline"
			switch {
			case d.Revoked:
				st = "revoked"
			case d.Online:
				st = "online"
			}
			seen := "never"
			if d.LastSeen != nil {
				seen = opstatus.Duration(now.Sub(*d.LastSeen)) + " ago"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", d.ID, d.Site, d.Role, st, d.Received, d.AckedSeq, d.Backlog, seen)
		}
		if err := tw.Flush(); err != nil {
			return "", err
		}
		for _, d := range devs {
			if d.Backlog > 0 {
				fmt.Fprintf(&b, "  %s draining %s  %d of %d acked\n", d.ID, opstatus.Bar(d.AckedSeq, d.LastSeq, 30), d.AckedSeq, d.LastSeq)
			}
		}
	}
	backup := "never"
	if ts, ok := m["linli_hub_backup_last_success_timestamp_seconds"]; ok && ts > 0 {
		backup = opstatus.When(time.Unix(int64(ts), 0), now)
	}
	fmt.Fprintf(&b, "last backup: %s\n", backup)
	if ts, ok := m["linli_hub_tls_cert_expiry_timestamp_seconds"]; ok {
		end := time.Unix(int64(ts), 0)
		note := ""
		if end.Sub(now) < 30*24*time.Hour {
			note = "  ROTATE SOON"
		}
		fmt.Fprintf(&b, "TLS certificate: expires %s%s\n", opstatus.When(end, now), note)
	} else {
		fmt.Fprintln(&b, "TLS certificate: none (plain HTTP and MQTT on loopback)")
	}
	return b.String(), nil
}
