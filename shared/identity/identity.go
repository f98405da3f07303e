// Package identity holds device and hub keys and the signed envelope that
// carries every uplink batch and downlink change: COSE_Sign1 (RFC 9052)
// with Ed25519, the signer's id as key id.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/veraison/go-cose"

	"linli/shared/event"
)

// Errors of the envelope.
var (
	ErrNotSigned = errors.New("message is not signed")
	ErrSignature = errors.New("bad signature")
	ErrKeyID     = errors.New("signed by another key id")
)

// IsSigned reports whether data starts like a tagged COSE_Sign1 (tag 18).
func IsSigned(data []byte) bool { return len(data) > 0 && data[0] == 0xd2 }

// Sign wraps payload in a COSE_Sign1 envelope signed by key, with kid as
// the key id (a device id, or the hub's).
func Sign(key ed25519.PrivateKey, kid string, payload []byte) ([]byte, error) {
	signer, err := cose.NewSigner(cose.AlgorithmEdDSA, key)
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmEdDSA)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = []byte(kid)
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, signer); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return msg.MarshalCBOR()
}

// KeyID reads the key id of an envelope without verifying it, so the
// verifier can pick the key.
func KeyID(envelope []byte) (string, error) {
	msg, err := parse(envelope)
	if err != nil {
		return "", err
	}
	kid, ok := msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	if !ok {
		return "", fmt.Errorf("%w: no key id", ErrSignature)
	}
	return string(kid), nil
}

func parse(envelope []byte) (*cose.Sign1Message, error) {
	if len(envelope) > event.MaxMessage {
		return nil, event.ErrTooLarge
	}
	if !IsSigned(envelope) {
		return nil, ErrNotSigned
	}
	msg := cose.NewSign1Message()
	if err := msg.UnmarshalCBOR(envelope); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return msg, nil
}

// Open verifies an envelope against pub and the expected key id and
// returns its payload.
func Open(envelope []byte, pub ed25519.PublicKey, kid string) ([]byte, error) {
	msg, err := parse(envelope)
	if err != nil {
		return nil, err
	}
	if alg, err := msg.Headers.Protected.Algorithm(); err != nil || alg != cose.AlgorithmEdDSA {
		return nil, fmt.Errorf("%w: algorithm is not EdDSA", ErrSignature)
	}
	got, _ := msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	if string(got) != kid {
		return nil, fmt.Errorf("%w: %q, want %q", ErrKeyID, got, kid)
	}
	verifier, err := cose.NewVerifier(cose.AlgorithmEdDSA, pub)
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	if err := msg.Verify(nil, verifier); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return msg.Payload, nil
}

// NewKey generates an Ed25519 key pair.
func NewKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return priv, nil
}

// SaveKey writes a private key as PKCS#8 PEM with mode 0600, atomically.
func SaveKey(path string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	return WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// LoadKey reads a key written by SaveKey.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return priv, nil
}

// LoadOrCreateKey loads the key at path, creating it on first use.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	k, err := LoadKey(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if k, err = NewKey(); err != nil {
		return nil, err
	}
	if err := SaveKey(path, k); err != nil {
		return nil, err
	}
	return k, nil
}

// EncodePublic renders a public key as unpadded base64url.
func EncodePublic(pub ed25519.PublicKey) string { return base64.RawURLEncoding.EncodeToString(pub) }

// DecodePublic parses EncodePublic's form.
func DecodePublic(s string) (ed25519.PublicKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key (base64url, 32 bytes)")
	}
	return ed25519.PublicKey(b), nil
}

// Fingerprint is the SHA-256 of a DER certificate, in hex: what an
// enrollment token carries so the edge can pin the hub's CA.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// WriteFileAtomic writes data to a temporary file, syncs it and renames it
// over path, so a power cut leaves the old or the new file, never half.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	cleanup := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return cleanup(err)
	}
	if _, err := f.Write(data); err != nil {
		return cleanup(err)
	}
	if err := f.Sync(); err != nil {
		return cleanup(err)
	}
	if err := f.Close(); err != nil {
		return cleanup(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Payload returns an envelope's payload WITHOUT verifying it, for an edge
// that has no hub key to check with yet (it must treat what it reads as
// unverified).
func Payload(envelope []byte) ([]byte, error) {
	msg, err := parse(envelope)
	if err != nil {
		return nil, err
	}
	return msg.Payload, nil
}
