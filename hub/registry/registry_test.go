package registry

import (
	"crypto/ed25519"
	"errors"
	"log/slog"
	"testing"
	"time"

	"linli/shared/kv"
)

func openRegistry(t *testing.T) *Registry {
	t.Helper()
	db, err := kv.Open(t.TempDir(), kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r, err := Open(db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newKey(t *testing.T) ed25519.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func enroll(t *testing.T, r *Registry, id string, replace bool, pub ed25519.PublicKey) (Device, string) {
	t.Helper()
	tok, _, err := r.Issue(id, "s1", "kiosk", "", time.Hour, replace)
	if err != nil {
		t.Fatalf("issue %s (replace %v): %v", id, replace, err)
	}
	d, pw, err := r.Enroll(tok.String(), pub)
	if err != nil {
		t.Fatalf("enroll %s: %v", id, err)
	}
	return d, pw
}

// Replacing is explicit; each replacement numbers above its predecessors,
// whose keys and logins stay good for what they numbered until a revoke.
func TestReplace(t *testing.T) {
	r := openRegistry(t)
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	d, pw1 := enroll(t, r, "kiosk-1", false, k1)
	if d.SeqBase != 0 || len(d.Previous) != 0 {
		t.Fatalf("first enrollment: base %d, %d past keys", d.SeqBase, len(d.Previous))
	}
	if _, _, err := r.Issue("kiosk-1", "s1", "kiosk", "", time.Hour, false); !errors.Is(err, ErrEnrolled) {
		t.Fatalf("issue for an enrolled id without replace: %v, want ErrEnrolled", err)
	}
	// A token issued before the first enrollment does not replace either.
	early, _, err := r.Issue("kiosk-9", "s1", "kiosk", "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	enroll(t, r, "kiosk-9", false, newKey(t))
	if _, _, err := r.Enroll(early.String(), newKey(t)); !errors.Is(err, ErrEnrolled) {
		t.Fatalf("second token of a new id: %v, want ErrEnrolled", err)
	}

	d, pw2 := enroll(t, r, "kiosk-1", true, k2)
	if d.SeqBase != SeqSpan || len(d.Previous) != 1 || d.Previous[0].From != 0 || d.Previous[0].Below != SeqSpan {
		t.Fatalf("after one replacement: base %d, past %+v", d.SeqBase, d.Previous)
	}
	d, _ = enroll(t, r, "kiosk-1", true, k3)
	if d.SeqBase != 2*SeqSpan || len(d.Previous) != 2 || d.Previous[1].From != SeqSpan || d.Previous[1].Below != 2*SeqSpan {
		t.Fatalf("after two replacements: base %d, past %+v", d.SeqBase, d.Previous)
	}
	// The same key enrolling again keeps its numbering.
	if d2, _ := enroll(t, r, "kiosk-1", true, k3); d2.SeqBase != d.SeqBase || len(d2.Previous) != 2 {
		t.Fatalf("same key again: base %d, %d past keys", d2.SeqBase, len(d2.Previous))
	}
	for _, tc := range []struct {
		key  ed25519.PublicKey
		want string
	}{{k1, IdentityReplaced}, {k2, IdentityReplaced}, {k3, IdentityOK}, {newKey(t), ""}} {
		if got := d.Identity(tc.key); got != tc.want {
			t.Errorf("identity of a key: %q, want %q", got, tc.want)
		}
	}
	for key, want := range map[*ed25519.PublicKey]string{&k1: "kiosk-1~1", &k2: "kiosk-1~2", &k3: "kiosk-1"} {
		if got := d.MosquittoLogin(*key); got != want {
			t.Errorf("Mosquitto login %q, want %q", got, want)
		}
	}
	for _, pw := range []string{pw1, pw2} {
		if _, err := r.Authenticate("kiosk-1", "kiosk-1", []byte(pw)); err != nil {
			t.Errorf("a replaced device's login: %v", err)
		}
	}
	if _, err := r.Revoke("kiosk-1"); err != nil {
		t.Fatal(err)
	}
	d, _ = r.Get("kiosk-1")
	for _, k := range []ed25519.PublicKey{k1, k3} {
		if got := d.Identity(k); got != IdentityRevoked {
			t.Errorf("after revoke: %q, want revoked", got)
		}
	}
	if _, err := r.Authenticate("kiosk-1", "kiosk-1", []byte(pw1)); !errors.Is(err, ErrRevoked) {
		t.Errorf("a revoked id's past login: %v, want ErrRevoked", err)
	}
	// A device enrolled after the revoke never trusts the revoked keys.
	d, _ = enroll(t, r, "kiosk-1", true, newKey(t))
	if d.SeqBase != 3*SeqSpan || d.Identity(k1) != IdentityRevoked || d.Identity(k3) != IdentityRevoked {
		t.Fatalf("after revoke and replace: base %d, k1 %q, k3 %q", d.SeqBase, d.Identity(k1), d.Identity(k3))
	}
	if _, err := r.Authenticate("kiosk-1", "kiosk-1", []byte(pw1)); !errors.Is(err, ErrCredentials) {
		t.Errorf("a revoked key's login after a replacement: %v, want ErrCredentials", err)
	}
}
