// Package registry is the hub's list of enrolled devices: one-time
// enrollment tokens, each device's public key and broker credentials,
// revocation, and the broker's authentication of devices.
package registry

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"linli/shared/event"
	"linli/shared/identity"
)

// Errors of enrollment and authentication.
var (
	ErrTokenUnknown = errors.New("enrollment token is unknown or already used")
	ErrTokenExpired = errors.New("enrollment token has expired")
	ErrRevoked      = errors.New("device is revoked")
	ErrUnknown      = errors.New("device is not enrolled")
	ErrCredentials  = errors.New("bad credentials")
	// ErrEnrolled means the id is enrolled already: replacing its device
	// must be asked for explicitly.
	ErrEnrolled = errors.New("device id is already enrolled; replacing its device must be asked for (replace)")
)

// SeqSpan is how many sequence numbers each of a device id's successive
// keys owns: the key of the n-th enrollment that replaced another signs
// seqs above n×SeqSpan, so a replacement never numbers an event like its
// predecessor's, whose unsent events may still arrive.
const SeqSpan uint64 = 1 << 40

// Identity states, as an edge is told them.
const (
	IdentityOK       = "ok"
	IdentityReplaced = "replaced"
	IdentityRevoked  = "revoked"
)

// Roles a device may have.
var Roles = []string{"kiosk", "gateway"}

// Device is an enrolled device.
type Device struct {
	ID        string    `cbor:"1,keyasint" json:"id"`
	Site      string    `cbor:"2,keyasint" json:"site"`
	Role      string    `cbor:"3,keyasint" json:"role"`
	PublicKey []byte    `cbor:"4,keyasint,omitempty" json:"-"`
	PassSalt  []byte    `cbor:"5,keyasint,omitempty" json:"-"`
	PassHash  []byte    `cbor:"6,keyasint,omitempty" json:"-"`
	Mosquitto string    `cbor:"7,keyasint,omitempty" json:"-"` // the password in mosquitto_passwd's $7$ form
	Enrolled  time.Time `cbor:"8,keyasint,omitempty" json:"enrolled,omitzero"`
	Revoked   time.Time `cbor:"9,keyasint,omitempty" json:"revoked,omitzero"`
	// SeqBase: the current key signs events with seq > SeqBase.
	SeqBase uint64 `cbor:"10,keyasint,omitempty" json:"-"`
	// Previous are the keys of the devices this one replaced, oldest first.
	Previous []PastKey `cbor:"11,keyasint,omitempty" json:"-"`
}

// PastKey is the key of a replaced device: it still signs (and logs in to
// deliver) the events it numbered, From < seq <= Below, until the id is
// revoked — each was answered 201 by that device.
type PastKey struct {
	PublicKey []byte    `cbor:"1,keyasint"`
	PassSalt  []byte    `cbor:"2,keyasint,omitempty"`
	PassHash  []byte    `cbor:"3,keyasint,omitempty"`
	From      uint64    `cbor:"4,keyasint,omitempty"`
	Below     uint64    `cbor:"5,keyasint"`
	Replaced  time.Time `cbor:"6,keyasint"`
	Revoked   bool      `cbor:"7,keyasint,omitempty"` // the id was revoked while this key was current
	Mosquitto string    `cbor:"8,keyasint,omitempty"` // its broker password, mosquitto_passwd form
}

// PastLogin is the Mosquitto username of id's n-th past key (from 0): a
// password file has one password per user, and the replacement has the id
// itself. "~" is never in a device id.
func PastLogin(id string, n int) string { return fmt.Sprintf("%s~%d", id, n+1) }

// MosquittoLogin is the Mosquitto username the device holding pub logs in
// with: the id for the current key, PastLogin for a replaced one, "" for a
// key that may not log in.
func (d *Device) MosquittoLogin(pub ed25519.PublicKey) string {
	if !d.Revoked.IsZero() {
		return ""
	}
	if bytes.Equal(d.PublicKey, pub) {
		return d.ID
	}
	for i, k := range d.Previous {
		if bytes.Equal(k.PublicKey, pub) && !k.Revoked && k.Mosquitto != "" {
			return PastLogin(d.ID, i)
		}
	}
	return ""
}

// Identity is what the device holding pub is now: ok (the current key),
// replaced (a previous key of the id), or revoked; "" for a key the id
// never had.
func (d *Device) Identity(pub ed25519.PublicKey) string {
	if bytes.Equal(d.PublicKey, pub) {
		if !d.Revoked.IsZero() {
			return IdentityRevoked
		}
		return IdentityOK
	}
	for _, k := range d.Previous {
		if bytes.Equal(k.PublicKey, pub) {
			if k.Revoked || !d.Revoked.IsZero() {
				return IdentityRevoked
			}
			return IdentityReplaced
		}
	}
	return ""
}

// Active reports whether the device is enrolled and not revoked.
func (d *Device) Active() bool { return len(d.PublicKey) > 0 && d.Revoked.IsZero() }

// Registry is safe for concurrent use.
type Registry struct {
	st  Store
	log *slog.Logger
	now func() time.Time

	mu      sync.RWMutex
	devices map[string]*Device
	// OnChange is called after a device is enrolled or revoked (to rewrite
	// a Mosquitto password file, to disconnect a revoked device).
	onChange []func(d Device)
	// onChanges are called once per change, with every device changed:
	// one for an enrollment or revocation, all of a Refresh's at once.
	onChanges []func(ds []Device)
}

// Open loads the registry from st.
func Open(st Store, log *slog.Logger) (*Registry, error) {
	r := &Registry{st: st, log: log, now: time.Now, devices: map[string]*Device{}}
	devs, err := st.Devices()
	if err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	for i := range devs {
		r.devices[devs[i].ID] = &devs[i]
	}
	return r, nil
}

// stamp is the time a record is marked with: UTC, whole seconds, as every
// store keeps it (a reloaded record equals the one handed out).
func (r *Registry) stamp() time.Time { return r.now().UTC().Truncate(time.Second) }

// OnChange registers f to be called after every enrollment or revocation.
func (r *Registry) OnChange(f func(d Device)) {
	r.mu.Lock()
	r.onChange = append(r.onChange, f)
	r.mu.Unlock()
}

// OnChanges registers f to be called once per change with the devices
// changed: one device for an enrollment or revocation, every device a
// Refresh found changed in one call. A hook whose work covers all
// devices at once (rewriting the broker's files) does it once for a
// Refresh that found thousands enrolled elsewhere, not once each.
func (r *Registry) OnChanges(f func(ds []Device)) {
	r.mu.Lock()
	r.onChanges = append(r.onChanges, f)
	r.mu.Unlock()
}

// tokenDigest is what the store keeps of a token's secret.
func tokenDigest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Issue creates a one-time enrollment token for a device, valid for ttl.
// For an id already enrolled it is ErrEnrolled unless replace is set: the
// device that enrolls with the token then replaces the enrolled one, whose
// key keeps signing the events it numbered (PastKey).
func (r *Registry) Issue(id, site, role, fingerprint string, ttl time.Duration, replace bool) (identity.Token, time.Time, error) {
	if err := event.ValidID(id); err != nil {
		return identity.Token{}, time.Time{}, &event.FieldError{Field: "id", Msg: err.Error()}
	}
	if id == "all" || id == "hub" || len(id) > 3 && id[:4] == "hub-" {
		return identity.Token{}, time.Time{}, &event.FieldError{Field: "id", Msg: fmt.Sprintf("%q is reserved", id)}
	}
	if err := event.ValidID(site); err != nil {
		return identity.Token{}, time.Time{}, &event.FieldError{Field: "site", Msg: err.Error()}
	}
	if !slices.Contains(Roles, role) {
		return identity.Token{}, time.Time{}, &event.FieldError{Field: "role", Msg: fmt.Sprintf("%q is not one of %v", role, Roles)}
	}
	r.mu.RLock()
	existing, ok := r.devices[id]
	r.mu.RUnlock()
	if ok && existing.Site != site {
		return identity.Token{}, time.Time{}, &event.FieldError{Field: "site", Msg: fmt.Sprintf("device %s is enrolled in site %s", id, existing.Site)}
	}
	if ok && !replace {
		return identity.Token{}, time.Time{}, ErrEnrolled
	}
	tok, err := identity.NewToken(fingerprint)
	if err != nil {
		return identity.Token{}, time.Time{}, err
	}
	exp := r.now().Add(ttl).UTC().Truncate(time.Second)
	if err := r.st.PutToken(tokenDigest(tok.Secret), Pending{ID: id, Site: site, Role: role, Expires: exp, Replace: replace}); err != nil {
		return identity.Token{}, time.Time{}, fmt.Errorf("store enrollment token: %w", err)
	}
	return tok, exp, nil
}

// Enroll consumes a token and registers pub as the device's key, with
// fresh broker credentials. It returns the device and its broker password
// (shown once; the hub keeps only hashes).
func (r *Registry) Enroll(token string, pub ed25519.PublicKey) (Device, string, error) {
	tok, err := identity.ParseToken(token)
	if err != nil {
		return Device{}, "", err
	}
	password := randomString(24)
	dev, err := r.st.Enroll(tokenDigest(tok.Secret), func(p Pending) (Device, error) {
		if r.now().After(p.Expires) {
			// The store spends the token all the same (see Store.Enroll):
			// left in place, it would work again should the hub's clock
			// be set back.
			return Device{}, ErrTokenExpired
		}
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return Device{}, err
		}
		d := Device{ID: p.ID, Site: p.Site, Role: p.Role, PublicKey: pub, PassSalt: salt,
			PassHash: hashPassword(salt, password), Mosquitto: mosquittoHash(password), Enrolled: r.stamp()}
		if old, ok := r.Get(p.ID); ok {
			if !p.Replace {
				return Device{}, ErrEnrolled // two tokens issued before the first enrollment
			}
			d.SeqBase, d.Previous = succeed(old, pub, d.Enrolled)
		}
		return d, nil
	})
	if err != nil {
		return Device{}, "", err
	}
	d := &dev
	r.mu.Lock()
	r.devices[d.ID] = d
	hooks, batch := r.onChange, r.onChanges
	r.mu.Unlock()
	for _, f := range hooks {
		f(*d)
	}
	for _, f := range batch {
		f([]Device{*d})
	}
	r.log.Info("device enrolled", "device", d.ID, "site", d.Site, "role", d.Role)
	return *d, password, nil
}

// succeed returns the seq base and past keys of the device that replaces
// old with key pub. The same key enrolling again (a re-enrolled data dir)
// keeps its numbering; a revoked device's keys stay refused.
func succeed(old Device, pub ed25519.PublicKey, now time.Time) (uint64, []PastKey) {
	if bytes.Equal(old.PublicKey, pub) && old.Revoked.IsZero() {
		return old.SeqBase, old.Previous
	}
	past := slices.Clone(old.Previous)
	base := uint64(len(past)+1) * SeqSpan
	past = append(past, PastKey{PublicKey: old.PublicKey, PassSalt: old.PassSalt, PassHash: old.PassHash,
		Mosquitto: old.Mosquitto, From: old.SeqBase, Below: base, Replaced: now})
	if !old.Revoked.IsZero() {
		// A revoked id's keys are never trusted again.
		for i := range past {
			past[i].Revoked = true
		}
	}
	return base, past
}

// Revoke revokes a device: its next connection and every message it signs
// from now on are refused.
func (r *Registry) Revoke(id string) (Device, error) {
	r.mu.Lock()
	d, ok := r.devices[id]
	if !ok {
		r.mu.Unlock()
		return Device{}, ErrUnknown
	}
	c := *d
	if c.Revoked.IsZero() {
		c.Revoked = r.stamp()
	}
	r.mu.Unlock()
	if err := r.st.PutDevice(c); err != nil {
		return Device{}, fmt.Errorf("store revocation: %w", err)
	}
	r.mu.Lock()
	r.devices[id] = &c
	hooks, batch := r.onChange, r.onChanges
	r.mu.Unlock()
	for _, f := range hooks {
		f(c)
	}
	for _, f := range batch {
		f([]Device{c})
	}
	r.log.Warn("device revoked", "device", id)
	return c, nil
}

// Get returns a device's record.
func (r *Registry) Get(id string) (Device, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.devices[id]
	if !ok {
		return Device{}, false
	}
	return *d, true
}

// List returns every device, sorted by id.
func (r *Registry) List() []Device {
	r.mu.RLock()
	out := make([]Device, 0, len(r.devices))
	for _, d := range r.devices {
		out = append(out, *d)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Device) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Key returns the public key of an active device. known is true when the
// device id is enrolled at all (revoked or not): such a device must sign.
func (r *Registry) Key(id string) (pub ed25519.PublicKey, known bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.devices[id]
	if !ok {
		return nil, false, ErrUnknown
	}
	if !d.Revoked.IsZero() {
		return nil, true, ErrRevoked
	}
	return ed25519.PublicKey(d.PublicKey), true, nil
}

// Authenticate checks a device's broker login and returns its site. Open
// (unenrolled) ids are the caller's business: this answers ErrUnknown.
func (r *Registry) Authenticate(clientID, username string, password []byte) (string, error) {
	r.mu.RLock()
	d, ok := r.devices[clientID]
	r.mu.RUnlock()
	if !ok {
		return "", ErrUnknown
	}
	if !d.Revoked.IsZero() {
		return "", ErrRevoked
	}
	if username != clientID {
		return "", ErrCredentials
	}
	if subtle.ConstantTimeCompare(hashPassword(d.PassSalt, string(password)), d.PassHash) == 1 {
		return d.Site, nil
	}
	// A replaced device logs in with its own credentials to deliver what
	// it still holds.
	for _, k := range d.Previous {
		if !k.Revoked && len(k.PassHash) > 0 && subtle.ConstantTimeCompare(hashPassword(k.PassSalt, string(password)), k.PassHash) == 1 {
			return d.Site, nil
		}
	}
	return "", ErrCredentials
}

func hashPassword(salt []byte, password string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(password))
	return h.Sum(nil)
}

// mosquittoHash is mosquitto_passwd's PBKDF2-SHA512 form ($7$), so the hub
// can write a password file for an external Mosquitto.
func mosquittoHash(password string) string {
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	const iterations = 101
	key, err := pbkdf2.Key(sha512.New, password, salt, iterations, 64)
	if err != nil {
		panic(err) // only for invalid parameters, which these are not
	}
	return fmt.Sprintf("$7$%d$%s$%s", iterations, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(key))
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ResidentKey returns a site's key for resident pseudonyms, creating it on
// first use.
func (r *Registry) ResidentKey(site string) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	key, err := r.st.ResidentKey(site, fresh)
	if err != nil {
		return nil, fmt.Errorf("resident key of %s: %w", site, err)
	}
	return key, nil
}

// Refresh reads every device from the store again and calls the OnChange
// hooks for each one enrolled, replaced or revoked since the last read:
// hubs sharing one store (workers on one PostgreSQL) learn within one
// refresh what another enrolled or revoked.
func (r *Registry) Refresh() error {
	devs, err := r.st.Devices()
	if err != nil {
		return fmt.Errorf("refresh registry: %w", err)
	}
	var changed []Device
	r.mu.Lock()
	for i := range devs {
		d := &devs[i]
		old, ok := r.devices[d.ID]
		if !ok || !bytes.Equal(old.PublicKey, d.PublicKey) || !old.Revoked.Equal(d.Revoked) ||
			old.Site != d.Site || len(old.Previous) != len(d.Previous) {
			changed = append(changed, *d)
		}
		r.devices[d.ID] = d
	}
	hooks, batch := r.onChange, r.onChanges
	r.mu.Unlock()
	for _, d := range changed {
		for _, f := range hooks {
			f(d)
		}
	}
	if len(changed) > 0 {
		for _, f := range batch {
			f(changed)
		}
	}
	return nil
}
