package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"linli/shared/identity"
)

// Files of a site-CA rotation in <data>/pki/. Rotate writes the next CA
// and its cross-certificate; Finish moves the next CA into ca.pem/ca.key
// and keeps the previous CA's certificate; the cross-certificate stays,
// and the hub hands it out while it is valid, so an edge that missed the
// rotation can still take the new CA on the strength of the one it pins.
const (
	nextCACert = "next-ca.pem"
	nextCAKey  = "next-ca.key"
	crossCert  = "cross.pem"
	prevCACert = "prev-ca.pem"
)

// CrossValidity is how long a cross-certificate is valid, and so how long
// after a rotation an edge that missed it can still take the new CA
// without being enrolled again.
const CrossValidity = 365 * 24 * time.Hour

// Phases of a site-CA rotation.
const (
	PhaseNone     = "none"     // one CA; no rotation pending
	PhaseStarted  = "started"  // a next CA is out to the edges; the server certificate is still the old CA's
	PhaseSwitched = "switched" // the server certificate is the new CA's; the cross-certificate is still handed out
)

// Rotation is where a site-CA rotation stands.
type Rotation struct {
	Phase    string `json:"phase"`
	Current  string `json:"current"`            // fingerprint of the CA that issues the server certificate
	Next     string `json:"next,omitempty"`     // started: the CA edges are taking
	Previous string `json:"previous,omitempty"` // switched: the CA before
	// CrossUntil: end of the cross-certificate's validity (the grace for
	// edges that missed the rotation).
	CrossUntil time.Time `json:"cross_until,omitzero"`
	// CA and Cross are the DER of the new CA's certificate and of its
	// cross-certificate (started and switched), what edges are sent.
	CA    []byte `json:"-"`
	Cross []byte `json:"-"`
}

// Target is the fingerprint an edge must trust to be on the rotated CA:
// the next CA while a rotation is started, else the current one.
func (r Rotation) Target() string {
	if r.Phase == PhaseStarted {
		return r.Next
	}
	return r.Current
}

// ErrNoRotation: Finish without a rotation started.
var ErrNoRotation = errors.New("no site-CA rotation is started (run `linli-hub ca rotate` first)")

// ErrNoSiteCA: the directory holds no site CA (the hub serves configured
// certificates, or never served TLS).
var ErrNoSiteCA = errors.New("this hub has no site CA of its own to rotate")

// Status reads where a rotation in dir stands, finishing a switch a crash
// interrupted.
func Status(dir string, now time.Time) (Rotation, error) {
	if err := resumeFinish(dir); err != nil {
		return Rotation{}, err
	}
	ca, err := readCert(filepath.Join(dir, caCert))
	if errors.Is(err, os.ErrNotExist) {
		return Rotation{}, ErrNoSiteCA
	}
	if err != nil {
		return Rotation{}, err
	}
	r := Rotation{Phase: PhaseNone, Current: identity.Fingerprint(ca.Raw)}
	cross, err := readCert(filepath.Join(dir, crossCert))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Rotation{}, err
	}
	if next, err := readCert(filepath.Join(dir, nextCACert)); err == nil {
		r.Phase, r.Next, r.CA = PhaseStarted, identity.Fingerprint(next.Raw), next.Raw
		if cross != nil && sameKey(cross, next) {
			r.Cross, r.CrossUntil = cross.Raw, cross.NotAfter
		}
		return r, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return Rotation{}, err
	}
	if cross != nil && sameKey(cross, ca) && now.Before(cross.NotAfter) {
		r.Phase, r.CA, r.Cross, r.CrossUntil = PhaseSwitched, ca.Raw, cross.Raw, cross.NotAfter
		if prev, err := readCert(filepath.Join(dir, prevCACert)); err == nil {
			r.Previous = identity.Fingerprint(prev.Raw)
		}
	}
	return r, nil
}

// Rotate starts a rotation: it creates the next site CA and its
// cross-certificate issued by the current CA, which edges that pin the
// current CA can verify. A rotation already started is returned as it is.
// The server certificate stays the current CA's until Finish.
func Rotate(dir string, now time.Time) (Rotation, error) {
	r, err := Status(dir, now)
	if err != nil || r.Phase == PhaseStarted {
		return r, err
	}
	ca, caPriv, err := loadOrCreateCA(dir, now)
	if err != nil {
		return Rotation{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Rotation{}, err
	}
	// A name of its own: the cross-certificate's issuer (the old CA) and
	// subject (the new one) must not look like one self-signed CA.
	tmpl := caTemplate(now, "Linli site CA "+now.UTC().Format("2006-01-02 15:04:05"))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Rotation{}, fmt.Errorf("create next site CA: %w", err)
	}
	next, err := x509.ParseCertificate(der)
	if err != nil {
		return Rotation{}, err
	}
	// The cross-certificate: the new CA's name and key, issued by the old
	// CA, valid no longer than the old CA itself.
	xt := caTemplate(now, tmpl.Subject.CommonName)
	xt.SubjectKeyId = next.SubjectKeyId
	xt.NotAfter = now.Add(CrossValidity)
	if ca.NotAfter.Before(xt.NotAfter) {
		xt.NotAfter = ca.NotAfter
	}
	xder, err := x509.CreateCertificate(rand.Reader, xt, ca, &key.PublicKey, caPriv)
	if err != nil {
		return Rotation{}, fmt.Errorf("cross-sign the next site CA: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Rotation{}, err
	}
	// The key first: a next-ca.pem without its key is read as a switch
	// interrupted half way (see resumeFinish).
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{nextCAKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600},
		{crossCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: xder}), 0o644},
		{nextCACert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644},
	} {
		if err := identity.WriteFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return Rotation{}, fmt.Errorf("store the next site CA: %w", err)
		}
	}
	return Status(dir, now)
}

// Finish switches to the next CA: it becomes the site CA (ca.pem, ca.key)
// and the previous CA's certificate is kept in prev-ca.pem. The caller
// then reissues the server certificate (Ensure does, since the one in
// place is not the new CA's) and reloads it.
func Finish(dir string, now time.Time) (Rotation, error) {
	r, err := Status(dir, now)
	if err != nil {
		return r, err
	}
	if r.Phase != PhaseStarted {
		return r, ErrNoRotation
	}
	cur, err := os.ReadFile(filepath.Join(dir, caCert))
	if err != nil {
		return Rotation{}, err
	}
	if err := identity.WriteFileAtomic(filepath.Join(dir, prevCACert), cur, 0o644); err != nil {
		return Rotation{}, err
	}
	// Key, then certificate, each by rename: a crash in between leaves
	// next-ca.pem without its key, which resumeFinish completes.
	if err := renameSynced(dir, nextCAKey, caKey); err != nil {
		return Rotation{}, err
	}
	if err := resumeFinish(dir); err != nil {
		return Rotation{}, err
	}
	return Status(dir, now)
}

// resumeFinish completes a switch that moved the next CA's key but not
// its certificate.
func resumeFinish(dir string) error {
	_, kerr := os.Stat(filepath.Join(dir, nextCAKey))
	if _, err := os.Stat(filepath.Join(dir, nextCACert)); err != nil || !errors.Is(kerr, os.ErrNotExist) {
		return nil
	}
	return renameSynced(dir, nextCACert, caCert)
}

func renameSynced(dir, from, to string) error {
	if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
		return fmt.Errorf("switch site CA: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("switch site CA: sync %s: %w", dir, err)
	}
	return nil
}

func caTemplate(now time.Time, name string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Linli"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
}

func sameKey(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s is not PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
