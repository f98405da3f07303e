package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// EnrollRequest is what an edge sends to POST /api/v1/enroll.
type EnrollRequest struct {
	Token     string `json:"token"`
	PublicKey string `json:"public_key"` // EncodePublic form
}

// EnrollResponse is the hub's answer: who the edge is and how it talks to
// the hub from now on.
type EnrollResponse struct {
	ID           string `json:"id"`
	Site         string `json:"site"`
	Role         string `json:"role"`
	MQTTUsername string `json:"mqtt_username"`
	MQTTPassword string `json:"mqtt_password"`
	HubID        string `json:"hub_id"`
	HubKey       string `json:"hub_key"`          // EncodePublic form
	CAPEM        string `json:"ca_pem,omitempty"` // the site CA, when the hub uses TLS
	Broker       string `json:"broker,omitempty"` // the hub's broker URL as it knows it
	// Pseudonymize tells kiosks to record residents by ResidentPseudonym
	// with ResidentKey (base64url), the site's key.
	Pseudonymize bool   `json:"pseudonymize,omitempty"`
	ResidentKey  string `json:"resident_key,omitempty"`
	// SeqBase: the edge numbers its events above it. A device that
	// replaces another under the same id starts past every seq its
	// predecessor may still deliver.
	SeqBase uint64 `json:"seq_base,omitempty"`
}

// StateRequest asks the hub what became of an edge's identity; Proof is
// the device id signed with its key (Sign, base64url).
type StateRequest struct {
	ID    string `json:"id"`
	Proof string `json:"proof"`
}

// StateResponse is the answer: Identity is "ok", "replaced" (another device
// enrolled under the id; this one still delivers what it numbered) or
// "revoked".
type StateResponse struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	// MQTTUsername, when set, is the login a replaced device uses on an
	// external Mosquitto to deliver what it holds (its password is the
	// same).
	MQTTUsername string `json:"mqtt_username,omitempty"`
}

// Token is a parsed enrollment token: a one-time secret and, when the hub
// serves TLS, the SHA-256 fingerprint of its CA (pinned by the edge).
type Token struct {
	Secret      string
	Fingerprint string
}

// ErrToken means a string is not an enrollment token.
var ErrToken = errors.New("not an enrollment token")

const tokenPrefix = "lt1."

// NewToken makes a token with a fresh secret.
func NewToken(fingerprint string) (Token, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return Token{}, err
	}
	return Token{Secret: base64.RawURLEncoding.EncodeToString(b), Fingerprint: fingerprint}, nil
}

// String renders lt1.SECRET or lt1.SECRET.FINGERPRINT.
func (t Token) String() string {
	s := tokenPrefix + t.Secret
	if t.Fingerprint != "" {
		s += "." + t.Fingerprint
	}
	return s
}

// ParseToken reads String's form.
func ParseToken(s string) (Token, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), tokenPrefix)
	if !ok {
		return Token{}, ErrToken
	}
	secret, fp, _ := strings.Cut(rest, ".")
	if b, err := base64.RawURLEncoding.DecodeString(secret); err != nil || len(b) != 18 {
		return Token{}, ErrToken
	}
	if fp != "" {
		if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
			return Token{}, ErrToken
		}
	}
	return Token{Secret: secret, Fingerprint: fp}, nil
}

// ResidentPseudonym is the id a site that pseudonymises records instead of
// a resident's number: a keyed hash with the site's key, the same on every
// kiosk of the site, unreadable without the key. It is a valid id itself.
func ResidentPseudonym(key []byte, resident string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("resident:" + resident))
	return "p-" + hex.EncodeToString(m.Sum(nil)[:8])
}
