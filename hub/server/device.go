package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"linli/shared/httpx"
)

// deviceMain is `linli-hub device add|revoke|list`: it talks to a running
// hub's API with the admin token from the hub's data dir.
func deviceMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := "usage: linli-hub device add --id ID --site SITE --role kiosk|gateway [--replace] | revoke --id ID | list  [--hub URL] [--data DIR | --token TOKEN]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("linli-hub device "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	hub := fs.String("hub", envOr("LINLI_HUB", "http://127.0.0.1:8080"), "the running hub's HTTP URL")
	data := fs.String("data", envOr("LINLI_DATA", "./data/hub"), "the hub's data dir (for admin.token)")
	token := fs.String("token", "", "admin API token (default: <data>/admin.token)")
	id := fs.String("id", "", "device id")
	site := fs.String("site", "", "site of the device")
	role := fs.String("role", "", "kiosk or gateway")
	replace := fs.Bool("replace", false, "add: the new device replaces one enrolled under the same id")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	client, tok, err := adminClient(*data, *token)
	if err != nil {
		fmt.Fprintf(stderr, "linli-hub device: bad setting \"data\": %v\n", err)
		return 2
	}
	var method, path string
	var body any
	switch verb {
	case "add":
		for _, f := range []struct{ name, v string }{{"id", *id}, {"site", *site}, {"role", *role}} {
			if f.v == "" {
				fmt.Fprintf(stderr, "linli-hub device add: bad setting %q: is required\n", f.name)
				return 2
			}
		}
		method, path, body = "POST", "/api/v1/devices", map[string]any{"id": *id, "site": *site, "role": *role, "replace": *replace}
	case "revoke":
		if *id == "" {
			fmt.Fprintln(stderr, "linli-hub device revoke: bad setting \"id\": is required")
			return 2
		}
		method, path = "DELETE", "/api/v1/devices/"+*id
	case "list":
		method, path = "GET", "/api/v1/devices"
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var out json.RawMessage
	code, err := call(ctx, client, method, strings.TrimRight(*hub, "/")+path, tok, body, &out)
	if err != nil {
		fmt.Fprintf(stderr, "linli-hub device %s: %v\n", verb, err)
		return 1
	}
	if code >= 300 {
		var e httpx.Error
		if json.Unmarshal(out, &e) != nil || e.Msg == "" {
			e.Msg = string(out)
		}
		fmt.Fprintf(stderr, "linli-hub device %s: the hub answered %d: %s\n", verb, code, e.Msg)
		return 1
	}
	switch verb {
	case "add":
		var r struct{ Token, Expires string }
		if err := json.Unmarshal(out, &r); err != nil {
			fmt.Fprintf(stderr, "linli-hub device add: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "enrollment token for %s (site %s, %s), valid until %s; on the edge run:\n", *id, *site, *role, r.Expires)
		fmt.Fprintf(stdout, "  linli-edge enroll --hub %s --token %s --data DIR\n", *hub, r.Token)
		fmt.Fprintln(stdout, r.Token) // the last line is the token alone, for scripts
	default:
		fmt.Fprintln(stdout, string(out))
	}
	return 0
}

// adminClient is the admin token (given, or read from the hub's data dir)
// and an HTTP client that trusts the hub's own site CA, for an https://
// hub.
func adminClient(data, token string) (*http.Client, string, error) {
	if token == "" {
		b, err := os.ReadFile(filepath.Join(data, "admin.token"))
		if err != nil {
			return nil, "", fmt.Errorf("cannot read the admin token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	client := http.DefaultClient
	if caPEM, err := os.ReadFile(filepath.Join(data, "pki", "ca.pem")); err == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	return client, token, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func call(ctx context.Context, client *http.Client, method, url, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = strings.NewReader(string(b))
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}
