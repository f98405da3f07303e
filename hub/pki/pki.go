// Package pki gives a hub TLS without an outside CA: on first start it
// creates a site CA and a server certificate for the hub's names, kept in
// the hub's data dir; edges pin the CA by the fingerprint their enrollment
// token carries.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"linli/shared/identity"
)

// Files in <data>/pki/.
const (
	caCert     = "ca.pem"
	caKey      = "ca.key"
	serverCert = ServerCertFile
	serverKey  = ServerKeyFile
)

// The server certificate and key Ensure keeps in its dir.
const (
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server.key"
)

// Bundle is what the hub serves TLS with.
type Bundle struct {
	Cert        tls.Certificate
	CAPEM       []byte // given to edges at enrollment
	Fingerprint string // SHA-256 of the CA certificate, carried in tokens
}

// ServerConfig is a TLS server config with the bundle's certificate. With
// clientCAs set, clients may present certificates (Mosquitto-style mutual
// TLS); they are verified when present.
func (b *Bundle) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{b.Cert}, MinVersion: tls.VersionTLS12}
}

// FromFiles loads a configured certificate and key, and the CA that issued
// it (for pinning; the certificate itself when caFile is empty).
func FromFiles(certFile, keyFile, caFile string) (*Bundle, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	var caDER []byte
	var caPEM []byte
	if caFile != "" {
		if caPEM, err = os.ReadFile(caFile); err != nil {
			return nil, fmt.Errorf("read TLS CA: %w", err)
		}
		block, _ := pem.Decode(caPEM)
		if block == nil {
			return nil, fmt.Errorf("%s: not PEM", caFile)
		}
		caDER = block.Bytes
	} else {
		caDER = cert.Certificate[len(cert.Certificate)-1]
		caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	}
	return &Bundle{Cert: cert, CAPEM: caPEM, Fingerprint: identity.Fingerprint(caDER)}, nil
}

// Ensure loads the site CA and server certificate from dir, creating them
// on first use, and reissues the server certificate when hosts changed or
// it nears its end.
func Ensure(dir string, hosts []string, now time.Time) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := resumeFinish(dir); err != nil {
		return nil, err
	}
	ca, caPriv, err := loadOrCreateCA(dir, now)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, serverCert), filepath.Join(dir, serverKey))
	if err != nil || !covers(cert, hosts) || certExpiring(cert, now) || !issuedBy(cert, ca) {
		if cert, err = issueServer(dir, ca, caPriv, hosts, now); err != nil {
			return nil, err
		}
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	return &Bundle{Cert: cert, CAPEM: caPEM, Fingerprint: identity.Fingerprint(ca.Raw)}, nil
}

func loadOrCreateCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, cerr := os.ReadFile(filepath.Join(dir, caCert))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, caKey))
	if cerr == nil && kerr == nil {
		cb, _ := pem.Decode(certPEM)
		kb, _ := pem.Decode(keyPEM)
		if cb == nil || kb == nil {
			return nil, nil, fmt.Errorf("site CA in %s is not PEM", dir)
		}
		ca, err := x509.ParseCertificate(cb.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("site CA: %w", err)
		}
		key, err := x509.ParseECPrivateKey(kb.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("site CA key: %w", err)
		}
		return ca, key, nil
	}
	if !errors.Is(cerr, os.ErrNotExist) && cerr != nil {
		return nil, nil, cerr
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := caTemplate(now, "Linli site CA")
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create site CA: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := identity.WriteFileAtomic(filepath.Join(dir, caKey), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := identity.WriteFileAtomic(filepath.Join(dir, caCert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func issueServer(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "linli-hub", Organization: []string{"Linli"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := identity.WriteFileAtomic(filepath.Join(dir, serverKey), keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := identity.WriteFileAtomic(filepath.Join(dir, serverCert), certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// covers reports whether the certificate names every host.
func covers(cert tls.Certificate, hosts []string) bool {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(leaf.IPAddresses, func(x net.IP) bool { return x.Equal(ip) }) {
				return false
			}
		} else if h != "" && !slices.Contains(leaf.DNSNames, h) {
			return false
		}
	}
	return true
}

// issuedBy reports whether the certificate is signed by ca (after a
// site-CA rotation it is not, and is issued again).
func issuedBy(cert tls.Certificate, ca *x509.Certificate) bool {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	return err == nil && leaf.CheckSignatureFrom(ca) == nil
}

func certExpiring(cert tls.Certificate, now time.Time) bool {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	return err != nil || now.Add(30*24*time.Hour).After(leaf.NotAfter)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
