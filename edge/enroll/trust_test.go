package enroll

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linli/shared/identity"
)

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := caTmpl(name, now.AddDate(10, 0, 0))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

func caTmpl(name string, until time.Time) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: until, KeyUsage: x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true}
}

// cross certifies ca's name and key by signer.
func cross(t *testing.T, ca testCA, signer testCA, until time.Time) []byte {
	t.Helper()
	tmpl := caTmpl(ca.cert.Subject.CommonName, until)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, &ca.key.PublicKey, signer.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// enrolled writes the identity of an edge that pinned pinned.
func enrolled(t *testing.T, pinned testCA) (string, *Identity) {
	t.Helper()
	dir := t.TempDir()
	if _, err := identity.LoadOrCreateKey(filepath.Join(dir, Dir, fileKey)); err != nil {
		t.Fatal(err)
	}
	hub, _, _ := ed25519.GenerateKey(rand.Reader)
	info, _ := json.Marshal(Identity{ID: "kiosk-1", Site: "s1", Role: "kiosk", Hub: "https://127.0.0.1:1",
		HubID: "hub", HubKey: identity.EncodePublic(hub),
		CAPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pinned.cert.Raw}))})
	if err := os.WriteFile(filepath.Join(dir, Dir, fileInfo), info, 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, id
}

// A new CA cross-signed by the pinned one is stored next to it; the edge
// then trusts both, also after a restart.
func TestAddTrustTakesACrossSignedCA(t *testing.T) {
	old, next := newCA(t, "old"), newCA(t, "next")
	dir, id := enrolled(t, old)
	got, added, err := AddTrust(dir, id, next.cert.Raw, cross(t, next, old, now.AddDate(1, 0, 0)), now)
	if err != nil || !added {
		t.Fatalf("AddTrust: added %v, %v", added, err)
	}
	want := []string{identity.Fingerprint(old.cert.Raw), identity.Fingerprint(next.cert.Raw)}
	stored, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []*Identity{got, stored} {
		if fp := i.Fingerprints(); len(fp) != 2 || fp[0] != want[0] || fp[1] != want[1] {
			t.Fatalf("trusted %v, want %v", fp, want)
		}
		conf, err := i.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		for _, ca := range []testCA{old, next} {
			if _, err := ca.cert.Verify(x509.VerifyOptions{Roots: conf.RootCAs, CurrentTime: now}); err != nil {
				t.Errorf("%s not trusted by the TLS config: %v", ca.cert.Subject.CommonName, err)
			}
		}
	}
	// The same bundle again changes nothing.
	before, _ := os.ReadFile(filepath.Join(dir, Dir, fileInfo))
	if _, added, err := AddTrust(dir, stored, next.cert.Raw, cross(t, next, old, now.AddDate(1, 0, 0)), now); err != nil || added {
		t.Fatalf("second AddTrust: added %v, %v", added, err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, Dir, fileInfo)); !bytes.Equal(before, after) {
		t.Fatal("identity rewritten for a CA already trusted")
	}
}

// A bundle that no trusted CA vouches for is refused and nothing stored
// changes.
func TestAddTrustRefusesForgedBundles(t *testing.T) {
	old, next, other := newCA(t, "old"), newCA(t, "next"), newCA(t, "intruder")
	year := now.AddDate(1, 0, 0)
	for _, tc := range []struct {
		name        string
		ca, crossed []byte
		want        error
	}{
		{"self-signed only", next.cert.Raw, next.cert.Raw, ErrNotCrossSigned},
		{"cross-signed by another CA", next.cert.Raw, cross(t, next, other, year), ErrNotCrossSigned},
		{"cross-certificate of another CA", other.cert.Raw, cross(t, next, old, year), nil},
		{"cross-certificate expired", next.cert.Raw, cross(t, next, old, now.Add(-time.Minute)), nil},
		{"not a certificate", []byte("junk"), cross(t, next, old, year), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, id := enrolled(t, old)
			before, _ := os.ReadFile(filepath.Join(dir, Dir, fileInfo))
			_, added, err := AddTrust(dir, id, tc.ca, tc.crossed, now)
			if err == nil || added || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("AddTrust: added %v, err %v (want %v)", added, err, tc.want)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, Dir, fileInfo)); !bytes.Equal(before, after) {
				t.Fatal("identity changed by a refused bundle")
			}
		})
	}
}

// FetchTrust reads the hub's bundle (the new CA, then its
// cross-certificate) over a connection it does not verify.
func TestFetchTrust(t *testing.T) {
	old, next := newCA(t, "old"), newCA(t, "next")
	x := cross(t, next, old, now.AddDate(1, 0, 0))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != BundlePath {
			http.NotFound(w, r)
			return
		}
		_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: next.cert.Raw})
		_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: x})
	}))
	defer srv.Close()
	_, id := enrolled(t, old)
	id.Hub = srv.URL
	ca, got, err := FetchTrust(context.Background(), id)
	if err != nil || !bytes.Equal(ca, next.cert.Raw) || !bytes.Equal(got, x) {
		t.Fatalf("FetchTrust: %v", err)
	}
}
