package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestEnsureIssuesAndReuses(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	b, err := Ensure(dir, []string{"127.0.0.1", "hub.local"}, now)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Ensure(dir, []string{"127.0.0.1", "hub.local"}, now)
	if err != nil || again.Fingerprint != b.Fingerprint || !again.Cert.Leaf.Equal(b.Cert.Leaf) && string(again.Cert.Certificate[0]) != string(b.Cert.Certificate[0]) {
		t.Fatalf("second Ensure did not reuse the CA and certificate (%v)", err)
	}
	// A new host name reissues the server certificate under the same CA.
	more, err := Ensure(dir, []string{"127.0.0.1", "hub.local", "10.0.0.5"}, now)
	if err != nil || more.Fingerprint != b.Fingerprint || string(more.Cert.Certificate[0]) == string(b.Cert.Certificate[0]) {
		t.Fatalf("new host: same CA %v, new cert %v (%v)", more.Fingerprint == b.Fingerprint, string(more.Cert.Certificate[0]) != string(b.Cert.Certificate[0]), err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(more.CAPEM) {
		t.Fatal("CA PEM does not parse")
	}
	leaf, err := x509.ParseCertificate(more.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hub.local", "10.0.0.5", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: now}); err != nil {
			t.Errorf("certificate does not verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "evil.example", CurrentTime: now}); err == nil {
		t.Error("certificate verifies for a name it was not issued for")
	}
}

func TestTLSHandshakeWithPinnedCA(t *testing.T) {
	b, err := Ensure(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", b.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CAPEM)
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("handshake with the pinned CA: %v", err)
	}
	c.Close()
	if _, _, err := net.SplitHostPort(ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
}
