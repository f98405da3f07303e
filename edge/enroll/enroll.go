// Package enroll gives an edge its identity: `linli-edge enroll` generates
// the device's Ed25519 key, presents a one-time token to the hub over HTTPS
// (HTTP on loopback), pins the hub's CA by the fingerprint the token
// carries, and stores what the hub answers in the data dir.
package enroll

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"linli/shared/event"
	"linli/shared/identity"
)

// Files in <data>/identity/.
const (
	Dir      = "identity"
	fileKey  = "device.key"
	fileInfo = "identity.json"
)

// Identity is what an enrolled edge knows of itself and its hub.
type Identity struct {
	ID           string `json:"id"`
	Site         string `json:"site"`
	Role         string `json:"role"`
	Hub          string `json:"hub"`
	MQTTUsername string `json:"mqtt_username"`
	MQTTPassword string `json:"mqtt_password"`
	HubID        string `json:"hub_id"`
	HubKey       string `json:"hub_key"`
	CAPEM        string `json:"ca_pem,omitempty"`
	Broker       string `json:"broker,omitempty"`
	Pseudonymize bool   `json:"pseudonymize,omitempty"`
	ResidentKey  string `json:"resident_key,omitempty"`
	Enrolled     string `json:"enrolled"`
	// SeqBase: this device numbers its events above it (it replaced
	// another device under the same id).
	SeqBase uint64 `json:"seq_base,omitempty"`

	Key    ed25519.PrivateKey `json:"-"`
	HubPub ed25519.PublicKey  `json:"-"`
}

// ErrNotEnrolled means the data dir holds no identity yet.
var ErrNotEnrolled = errors.New("not enrolled")

// Load reads the identity of the edge whose data dir is dataDir.
func Load(dataDir string) (*Identity, error) {
	dir := filepath.Join(dataDir, Dir)
	data, err := os.ReadFile(filepath.Join(dir, fileInfo))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	id := new(Identity)
	if err := json.Unmarshal(data, id); err != nil {
		return nil, fmt.Errorf("identity file %s: %w", filepath.Join(dir, fileInfo), err)
	}
	if id.Key, err = identity.LoadKey(filepath.Join(dir, fileKey)); err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	if id.HubPub, err = identity.DecodePublic(id.HubKey); err != nil {
		return nil, fmt.Errorf("identity file: hub key: %w", err)
	}
	return id, nil
}

// Pseudonym returns how this kiosk records a resident: by the site's keyed
// hash when the hub pseudonymises, else as given.
func (id *Identity) Pseudonym() func(string) string {
	if id == nil || !id.Pseudonymize {
		return nil
	}
	key, err := base64.RawURLEncoding.DecodeString(id.ResidentKey)
	if err != nil || len(key) == 0 {
		return nil
	}
	return func(resident string) string { return identity.ResidentPseudonym(key, resident) }
}

// TLSConfig trusts only the hub's site CA, when it has one.
func (id *Identity) TLSConfig() (*tls.Config, error) {
	if id.CAPEM == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(id.CAPEM)) {
		return nil, errors.New("identity: CA certificate is not PEM")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Options of an enrollment.
type Options struct {
	Hub     string // http(s)://host:port of the hub
	Token   string
	DataDir string
	Logger  *slog.Logger
	// RetryMax bounds attempts while the hub is unreachable.
	RetryMax int
}

// ErrRefused is the hub saying no (bad, used or expired token).
var ErrRefused = errors.New("the hub refused the enrollment")

// Enroll runs the enrollment and stores the identity.
func Enroll(ctx context.Context, o Options) (*Identity, error) {
	u, err := url.Parse(o.Hub)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hub %q: want http(s)://host:port", o.Hub)
	}
	tok, err := identity.ParseToken(o.Token)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		return nil, fmt.Errorf("hub %q: plain HTTP is only for loopback; use https://", o.Hub)
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 8
	}
	client := retryablehttp.NewClient()
	client.RetryMax = o.RetryMax
	client.RetryWaitMin = 200 * time.Millisecond
	client.RetryWaitMax = 5 * time.Second
	client.Logger = nil
	if o.Logger != nil {
		client.Logger = slogAdapter{o.Logger}
	}
	// The client is this call's: its connection must not outlive it (a
	// fleet enrolled at once held one per device, here and in the hub).
	defer func() { client.HTTPClient.CloseIdleConnections() }()
	var caPEM string
	if u.Scheme == "https" {
		if tok.Fingerprint == "" {
			return nil, errors.New("token carries no CA fingerprint to pin; issue it from a hub that serves TLS")
		}
		if caPEM, err = fetchPinnedCA(ctx, client, o.Hub, tok.Fingerprint); err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(caPEM))
		client.HTTPClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	dir := filepath.Join(o.DataDir, Dir)
	keyPath := filepath.Join(dir, fileKey)
	// The key is created before asking the hub, and kept if enrollment is
	// retried: the device's identity is its key.
	key, err := identity.LoadOrCreateKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("device key in %s: %w", dir, err)
	}
	body, err := json.Marshal(identity.EnrollRequest{Token: tok.String(), PublicKey: identity.EncodePublic(key.Public().(ed25519.PublicKey))})
	if err != nil {
		return nil, err
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, "POST", strings.TrimRight(o.Hub, "/")+"/api/v1/enroll", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("enroll at %s: %w", o.Hub, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("enroll at %s: %w", o.Hub, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return nil, fmt.Errorf("%w (%d): %s", ErrRefused, resp.StatusCode, e.Error)
	}
	var er identity.EnrollResponse
	if err := json.Unmarshal(data, &er); err != nil {
		return nil, fmt.Errorf("enroll answer: %w", err)
	}
	if err := event.ValidID(er.ID); err != nil {
		return nil, fmt.Errorf("enroll answer: id %w", err)
	}
	if caPEM != "" {
		er.CAPEM = caPEM // the pinned one, whatever the answer says
	} else if er.CAPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(er.CAPEM)) {
		// Stored, it would fail every later connection to the broker and
		// the hub rather than this enrollment.
		return nil, errors.New("enroll answer: ca_pem is not a PEM certificate")
	}
	id := &Identity{ID: er.ID, Site: er.Site, Role: er.Role, Hub: o.Hub, MQTTUsername: er.MQTTUsername,
		MQTTPassword: er.MQTTPassword, HubID: er.HubID, HubKey: er.HubKey, CAPEM: er.CAPEM, Broker: er.Broker,
		Pseudonymize: er.Pseudonymize, ResidentKey: er.ResidentKey, SeqBase: er.SeqBase,
		Enrolled: time.Now().UTC().Format(time.RFC3339), Key: key}
	if id.HubPub, err = identity.DecodePublic(er.HubKey); err != nil {
		return nil, fmt.Errorf("enroll answer: hub key: %w", err)
	}
	info, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := identity.WriteFileAtomic(filepath.Join(dir, fileInfo), info, 0o600); err != nil {
		return nil, fmt.Errorf("store identity: %w", err)
	}
	return id, nil
}

// Check asks the hub what became of this edge's identity: "ok",
// "replaced" or "revoked". It proves the key by signing its id, and trusts
// the answer because it comes over the hub's pinned CA (or loopback).
func Check(ctx context.Context, id *Identity) (identity.StateResponse, error) {
	var sr identity.StateResponse
	proof, err := identity.Sign(id.Key, id.ID, []byte(id.ID))
	if err != nil {
		return sr, err
	}
	body, err := json.Marshal(identity.StateRequest{ID: id.ID, Proof: base64.RawURLEncoding.EncodeToString(proof)})
	if err != nil {
		return sr, err
	}
	tlsConf, err := id.TLSConfig()
	if err != nil {
		return sr, err
	}
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	defer client.CloseIdleConnections() // a transport with no idle timeout would keep it for good
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(id.Hub, "/")+"/api/v1/identity", bytes.NewReader(body))
	if err != nil {
		return sr, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return sr, fmt.Errorf("ask the hub about this identity: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return sr, fmt.Errorf("ask the hub about this identity: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusForbidden:
		// The hub knows no such device or not this key: as good as revoked.
		return identity.StateResponse{ID: id.ID, Identity: "revoked"}, nil
	default:
		return sr, fmt.Errorf("ask the hub about this identity: status %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, &sr); err != nil {
		return sr, fmt.Errorf("identity answer: %w", err)
	}
	return sr, nil
}

// fetchPinnedCA downloads the hub's CA without trusting the connection,
// and accepts it only if its fingerprint is the one the token carries (as
// `kubeadm join` does with its discovery hash).
func fetchPinnedCA(ctx context.Context, client *retryablehttp.Client, hub, fingerprint string) (string, error) {
	insecure := retryablehttp.NewClient()
	insecure.RetryMax, insecure.RetryWaitMin, insecure.RetryWaitMax = client.RetryMax, client.RetryWaitMin, client.RetryWaitMax
	insecure.Logger = client.Logger
	insecure.HTTPClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		// The CA is verified by its fingerprint below, not by the chain.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec
	}}
	defer insecure.HTTPClient.CloseIdleConnections()
	req, err := retryablehttp.NewRequestWithContext(ctx, "GET", strings.TrimRight(hub, "/")+"/api/v1/ca.pem", nil)
	if err != nil {
		return "", err
	}
	resp, err := insecure.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch hub CA: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("fetch hub CA: %w", err)
	}
	block, _ := pem.Decode(data)
	if resp.StatusCode != http.StatusOK || block == nil {
		return "", fmt.Errorf("fetch hub CA: status %d, no PEM certificate", resp.StatusCode)
	}
	if got := identity.Fingerprint(block.Bytes); got != fingerprint {
		return "", fmt.Errorf("the hub's CA fingerprint %s is not the %s the token pins: refusing", got, fingerprint)
	}
	return string(data), nil
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type slogAdapter struct{ l *slog.Logger }

func (s slogAdapter) Error(msg string, kv ...any) { s.l.Warn(msg, kv...) }
func (s slogAdapter) Info(msg string, kv ...any)  { s.l.Debug(msg, kv...) }
func (s slogAdapter) Debug(msg string, kv ...any) { s.l.Debug(msg, kv...) }
func (s slogAdapter) Warn(msg string, kv ...any)  { s.l.Warn(msg, kv...) }

// Main is `linli-edge enroll --hub URL --token T --data DIR`: it returns 0
// once enrolled, 2 for bad arguments, 1 when enrollment fails.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("linli-edge enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hub := fs.String("hub", "", "hub URL, e.g. https://hub.example:8443 (http:// only on loopback)")
	token := fs.String("token", "", "one-time enrollment token from `linli-hub device add`")
	data := fs.String("data", "", "the edge's data directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, f := range []struct{ name, v string }{{"hub", *hub}, {"token", *token}, {"data", *data}} {
		if f.v == "" {
			fmt.Fprintf(stderr, "linli-edge enroll: bad setting %q: is required\n", f.name)
			return 2
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	id, err := Enroll(ctx, Options{Hub: *hub, Token: *token, DataDir: *data, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "linli-edge enroll: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "enrolled %s (%s) in site %s; identity stored in %s\n", id.ID, id.Role, id.Site, filepath.Join(*data, Dir))
	return 0
}
