package server

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"linli/hub/pki"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// issue writes a fresh CA and server certificate for 127.0.0.1 into a new
// dir and returns the certificate's and key's paths and its serial.
func issue(t *testing.T, now time.Time) (cert, key string, serial *big.Int) {
	t.Helper()
	dir := t.TempDir()
	b, err := pki.Ensure(dir, []string{"127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(b.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, pki.ServerCertFile), filepath.Join(dir, pki.ServerKeyFile), leaf.SerialNumber
}

// served is the serial of the certificate a new TLS handshake presents.
func served(t *testing.T, addr string) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the serial is the point, not trust
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

// Rewriting the certificate files makes the next handshake, on the HTTP
// and the MQTT listener, present the new certificate; the expiry metric
// follows.
func TestTLSCertificateReloadsOnFileChange(t *testing.T) {
	t.Parallel()
	oldCert, oldKey, oldSerial := issue(t, time.Now())
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "hub.pem"), filepath.Join(dir, "hub.key")
	copyFile(t, oldCert, cert)
	copyFile(t, oldKey, key)
	cfg := Config{Data: t.TempDir(), HTTP: "127.0.0.1:0", MQTTListen: "127.0.0.1:0", ID: "hub",
		Profile: "small", LogLevel: "info", MaxGroup: 20000, TokenTTL: time.Hour, TLS: "on",
		TLSCert: cert, TLSKey: key, TLSReload: 50 * time.Millisecond}
	h, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Error(err)
		}
	})
	for _, addr := range []string{h.HTTPAddr(), h.MQTTAddr()} {
		if got := served(t, addr); got.Cmp(oldSerial) != 0 {
			t.Fatalf("%s serves %v, want %v", addr, got, oldSerial)
		}
	}
	// A renewal a year on: a later NotAfter, another key.
	newCert, newKey, newSerial := issue(t, time.Now().AddDate(1, 0, 0))
	copyFile(t, newKey, key)
	copyFile(t, newCert, cert)
	for _, addr := range []string{h.HTTPAddr(), h.MQTTAddr()} {
		poll.Eventually(t, 10*time.Second, func() (bool, string) {
			got := served(t, addr)
			return got.Cmp(newSerial) == 0, addr + " still serves " + got.String()
		})
	}
	newLeaf, _ := tls.LoadX509KeyPair(newCert, newKey)
	leaf, err := x509.ParseCertificate(newLeaf.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	want := "linli_hub_tls_cert_expiry_timestamp_seconds " + formatFloat(float64(leaf.NotAfter.Unix()))
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		m := metricsText(t, h.HTTPURL())
		return strings.Contains(m, want), "metrics lack " + want
	})
}

// A certificate within 30 days of its end is warned about in the log.
func TestTLSCertificateExpiryWarning(t *testing.T) {
	t.Parallel()
	// Issued two years less 10 days ago: 10 days left.
	cert, key, _ := issue(t, time.Now().AddDate(-2, 0, 10))
	var logs testkit.SyncBuffer
	_, err := pki.NewHolder(func() (tls.Certificate, error) { return tls.LoadX509KeyPair(cert, key) },
		[]string{cert, key}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"TLS server certificate expires soon") {
		t.Errorf("no expiry warning in %q", logs.String())
	}
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// formatFloat is how the Prometheus text format writes a gauge value.
func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// The site-CA rotation through the admin API of a hub with its own CA:
// nothing to finish before a rotation, the next CA goes into the site's
// downlink and its bundle is handed out once started, and finish moves
// the certificate of both listeners to the new CA without a restart.
func TestSiteCARotationAPI(t *testing.T) {
	t.Parallel()
	cfg := Config{Data: t.TempDir(), HTTP: "127.0.0.1:0", MQTTListen: "127.0.0.1:0", ID: "hub", Sites: []string{"s1"},
		Profile: "small", LogLevel: "info", MaxGroup: 20000, TokenTTL: time.Hour, TLS: "on", TLSReload: time.Hour}
	h, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Error(err)
		}
	})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	call := func(method, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, h.HTTPURL()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	oldCA := h.tls.Fingerprint
	for _, c := range []struct {
		method, path, token string
		code                int
		has                 string
	}{
		{"GET", "/api/v1/pki", "", 401, ""},
		{"POST", "/api/v1/pki/rotate", "", 401, ""},
		{"GET", "/api/v1/pki", h.token, 200, `"phase":"none"`},
		{"POST", "/api/v1/pki/finish", h.token, 409, "no site-CA rotation is started"},
		{"GET", "/api/v1/pki/bundle", "", 404, ""},
		{"POST", "/api/v1/pki/rotate", h.token, 200, `"phase":"started"`},
	} {
		if code, body := call(c.method, c.path, c.token); code != c.code || !strings.Contains(body, c.has) {
			t.Fatalf("%s %s: %d %s, want %d with %q", c.method, c.path, code, body, c.code, c.has)
		}
	}
	if head := h.down.Head("s1"); head != 1 {
		t.Fatalf("downlink head of s1 after rotate: %d, want the trust change", head)
	}
	code, bundle := call("GET", "/api/v1/pki/bundle", "")
	if code != 200 || strings.Count(bundle, "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("bundle: %d %q", code, bundle)
	}
	if m := metricsText(t, h.HTTPURL()); !strings.Contains(m, `linli_hub_ca_devices{state="old"} 0`) {
		t.Fatal("metrics lack linli_hub_ca_devices")
	}
	if code, body := call("POST", "/api/v1/pki/finish", h.token); code != 200 || !strings.Contains(body, `"phase":"switched"`) || !strings.Contains(body, `"previous":"`+oldCA+`"`) {
		t.Fatalf("finish: %d %s", code, body)
	}
	_, caPEM := call("GET", "/api/v1/ca.pem", "")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("ca.pem after finish is not PEM")
	}
	for _, addr := range []string{h.HTTPAddr(), h.MQTTAddr()} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("%s after finish does not verify against the new CA: %v", addr, err)
		}
		c.Close()
	}
}
