package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linli/shared/identity"
)

// A rotation goes none → started → switched: the next CA is
// cross-certified by the old one from the start, the server certificate
// moves to the new CA only at Finish, and the rotation stays switched
// (its bundle handed out) while the cross-certificate is valid.
func TestRotateCrossSignsAndFinishSwitches(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	hosts := []string{"127.0.0.1"}
	old, err := Ensure(dir, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Finish(dir, now); !errors.Is(err, ErrNoRotation) {
		t.Fatalf("Finish before Rotate: %v, want ErrNoRotation", err)
	}
	r, err := Rotate(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != PhaseStarted || r.Current != old.Fingerprint || r.Next == "" || r.Next == old.Fingerprint || r.Target() != r.Next {
		t.Fatalf("after Rotate: %+v (old CA %s)", r, old.Fingerprint)
	}
	oldCA := parsePEM(t, old.CAPEM)
	next, cross := parseDER(t, r.CA), parseDER(t, r.Cross)
	if err := cross.CheckSignatureFrom(oldCA); err != nil {
		t.Fatalf("cross-certificate not signed by the old CA: %v", err)
	}
	if !sameKey(cross, next) || cross.Subject.String() != next.Subject.String() || identity.Fingerprint(next.Raw) != r.Next {
		t.Fatal("cross-certificate does not certify the next CA's name and key")
	}
	if again, err := Rotate(dir, now); err != nil || again.Next != r.Next {
		t.Fatalf("second Rotate made another CA: %v %+v", err, again)
	}
	// Started: the hub still serves the old CA's certificate, alone.
	b, err := Ensure(dir, hosts, now)
	if err != nil || b.Fingerprint != old.Fingerprint || len(b.Cert.Certificate) != 1 {
		t.Fatalf("started: CA %s (want %s), chain %d, %v", b.Fingerprint, old.Fingerprint, len(b.Cert.Certificate), err)
	}

	r, err = Finish(dir, now)
	if err != nil || r.Phase != PhaseSwitched || r.Current != identity.Fingerprint(next.Raw) || r.Previous != old.Fingerprint {
		t.Fatalf("after Finish: %+v %v", r, err)
	}
	b, err = Ensure(dir, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	if b.Fingerprint != r.Current || string(r.Cross) != string(cross.Raw) || string(r.CA) != string(next.Raw) {
		t.Fatalf("switched: CA %s, bundle kept %v", b.Fingerprint, string(r.Cross) == string(cross.Raw))
	}
	leaf := parseDER(t, b.Cert.Certificate[0])
	if err := leaf.CheckSignatureFrom(next); err != nil {
		t.Fatalf("server certificate not issued by the new CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(next)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1", CurrentTime: now}); err != nil {
		t.Fatalf("server certificate does not verify against the new CA: %v", err)
	}
	// Once the cross-certificate ends, the rotation is over.
	later := r.CrossUntil.Add(time.Hour)
	if r, err := Status(dir, later); err != nil || r.Phase != PhaseNone {
		t.Fatalf("after the grace: %+v %v", r, err)
	}
}

// A switch interrupted after the key moved and before the certificate did
// is completed on the next start, not left with a key that does not
// match its certificate.
func TestFinishInterruptedIsCompleted(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := Ensure(dir, []string{"127.0.0.1"}, now); err != nil {
		t.Fatal(err)
	}
	r, err := Rotate(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	// What Finish does up to a crash: the old certificate kept, the key moved.
	cur, _ := os.ReadFile(filepath.Join(dir, caCert))
	if err := os.WriteFile(filepath.Join(dir, prevCACert), cur, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, nextCAKey), filepath.Join(dir, caKey)); err != nil {
		t.Fatal(err)
	}
	b, err := Ensure(dir, []string{"127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if b.Fingerprint != r.Next || !issuedBy(b.Cert, parseDER(t, r.CA)) {
		t.Fatalf("after the interrupted switch: CA %s (want %s)", b.Fingerprint, r.Next)
	}
}

func TestRotateWithoutSiteCA(t *testing.T) {
	if _, err := Rotate(t.TempDir(), time.Now()); !errors.Is(err, ErrNoSiteCA) {
		t.Fatalf("Rotate in an empty dir: %v, want ErrNoSiteCA", err)
	}
}

func parsePEM(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("not PEM")
	}
	return parseDER(t, b.Bytes)
}

func parseDER(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
