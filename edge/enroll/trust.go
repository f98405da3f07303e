package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"linli/shared/identity"
)

// The edge trusts the site CA it pinned at enrollment and every CA a
// rotation brought since, all kept as PEM in the identity's CAPEM. A new
// CA is taken only with its cross-certificate: the new CA's name and key
// certified by a CA already trusted, so no one but the holder of a
// trusted CA's key can add one.

// ErrNotCrossSigned refuses a new CA that no trusted CA certified.
var ErrNotCrossSigned = errors.New("the new site CA is not cross-signed by a CA this edge trusts")

// CAs are the site CAs the identity trusts.
func (id *Identity) CAs() []*x509.Certificate {
	var out []*x509.Certificate
	rest := []byte(id.CAPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// Fingerprints are the SHA-256 fingerprints of the CAs the identity
// trusts, which the edge reports in its hello.
func (id *Identity) Fingerprints() []string {
	if id == nil {
		return nil
	}
	var out []string
	for _, c := range id.CAs() {
		out = append(out, identity.Fingerprint(c.Raw))
	}
	return out
}

// CheckCross verifies that cross certifies newCA (same name, same key), is
// valid at now and is signed by one of trusted.
func CheckCross(trusted []*x509.Certificate, newCA, cross *x509.Certificate, now time.Time) error {
	if !newCA.IsCA || !cross.IsCA {
		return errors.New("not a CA certificate")
	}
	if err := newCA.CheckSignatureFrom(newCA); err != nil {
		return fmt.Errorf("the new site CA is not self-signed: %w", err)
	}
	if !bytes.Equal(cross.RawSubjectPublicKeyInfo, newCA.RawSubjectPublicKeyInfo) || !bytes.Equal(cross.RawSubject, newCA.RawSubject) {
		return errors.New("the cross-certificate certifies another CA than the one sent")
	}
	if now.Before(cross.NotBefore) || now.After(cross.NotAfter) {
		return fmt.Errorf("the cross-certificate is valid from %s to %s, not now", cross.NotBefore.UTC(), cross.NotAfter.UTC())
	}
	for _, t := range trusted {
		if cross.CheckSignatureFrom(t) == nil {
			return nil
		}
	}
	return ErrNotCrossSigned
}

// BundlePath is where a hub hands out the CA a rotation introduces and
// its cross-certificate (PEM, in that order), to anyone: the
// cross-certificate is the proof.
const BundlePath = "/api/v1/pki/bundle"

// FetchTrust asks the hub for the rotation's bundle without trusting the
// connection — the edge whose TLS no longer verifies (it missed a
// rotation) has nothing else to reach the hub with. The caller must check
// the bundle with AddTrust, which takes the new CA only if the
// cross-certificate is signed by a CA the edge trusts.
func FetchTrust(ctx context.Context, id *Identity) (caDER, crossDER []byte, err error) {
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		// The bundle is verified by its cross-signature, not by the chain.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec
	}}
	defer client.CloseIdleConnections() // the call's own transport: nothing may outlive it
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(id.Hub, "/")+BundlePath, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch the site-CA bundle: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, nil, fmt.Errorf("fetch the site-CA bundle: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("fetch the site-CA bundle: status %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	ca, rest := pem.Decode(data)
	cross, _ := pem.Decode(rest)
	if ca == nil || cross == nil {
		return nil, nil, errors.New("fetch the site-CA bundle: want two PEM certificates, the new CA and its cross-certificate")
	}
	return ca.Bytes, cross.Bytes, nil
}

// AddTrust takes a new site CA (DER) with its cross-certificate (DER) into
// the identity in dataDir: checked against the CAs the identity trusts,
// then stored next to them (identity.json written whole to a temporary
// file, synced and renamed). It returns the identity with the new CA and
// whether anything changed; on an error nothing stored changed.
func AddTrust(dataDir string, id *Identity, caDER, crossDER []byte, now time.Time) (*Identity, bool, error) {
	newCA, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, false, fmt.Errorf("new site CA: %w", err)
	}
	trusted := id.CAs()
	if len(trusted) == 0 {
		return nil, false, errors.New("this edge pins no site CA (its hub serves plain HTTP)")
	}
	for _, t := range trusted {
		if t.Equal(newCA) {
			return id, false, nil
		}
	}
	cross, err := x509.ParseCertificate(crossDER)
	if err != nil {
		return nil, false, fmt.Errorf("cross-certificate: %w", err)
	}
	if err := CheckCross(trusted, newCA, cross, now); err != nil {
		return nil, false, err
	}
	add := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newCA.Raw}))
	// The stored identity, not the one in memory: what the edge learnt
	// for this run only (a replaced device's login) stays out of the file.
	stored, err := Load(dataDir)
	if err != nil {
		return nil, false, err
	}
	stored.CAPEM = joinPEM(stored.CAPEM, add)
	info, err := json.MarshalIndent(stored, "", "  ")
	if err != nil {
		return nil, false, err
	}
	if err := identity.WriteFileAtomic(filepath.Join(dataDir, Dir, fileInfo), info, 0o600); err != nil {
		return nil, false, fmt.Errorf("store the new site CA: %w", err)
	}
	next := *id
	next.CAPEM = joinPEM(id.CAPEM, add)
	return &next, true, nil
}

func joinPEM(a, b string) string {
	if a != "" && a[len(a)-1] != '\n' {
		a += "\n"
	}
	return a + b
}
