package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSignOpen(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewKey()
	payload := []byte("batch bytes")
	env, err := Sign(k, "kiosk-1", payload)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSigned(env) || IsSigned(payload) {
		t.Fatal("IsSigned does not tell envelopes from payloads")
	}
	if kid, err := KeyID(env); err != nil || kid != "kiosk-1" {
		t.Fatalf("KeyID = %q, %v", kid, err)
	}
	got, err := Open(env, k.Public().(ed25519.PublicKey), "kiosk-1")
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := Open(env, other.Public().(ed25519.PublicKey), "kiosk-1"); !errors.Is(err, ErrSignature) {
		t.Fatalf("Open with another key = %v, want ErrSignature", err)
	}
	if _, err := Open(env, k.Public().(ed25519.PublicKey), "kiosk-2"); !errors.Is(err, ErrKeyID) {
		t.Fatalf("Open for another kid = %v, want ErrKeyID", err)
	}
	// Every single flipped bit is caught.
	for i := range len(env) * 8 {
		bad := bytes.Clone(env)
		bad[i/8] ^= 1 << (i % 8)
		if p, err := Open(bad, k.Public().(ed25519.PublicKey), "kiosk-1"); err == nil && !bytes.Equal(p, payload) {
			t.Fatalf("flipped bit %d opened with a changed payload", i)
		} else if err == nil {
			t.Fatalf("flipped bit %d still verifies", i)
		}
	}
	if _, err := Open(payload, k.Public().(ed25519.PublicKey), "kiosk-1"); !errors.Is(err, ErrNotSigned) {
		t.Fatalf("Open of a bare payload = %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "id", "device.key")
	k, err := LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	k2, err := LoadOrCreateKey(p)
	if err != nil || !k.Equal(k2) {
		t.Fatal("key not loaded back")
	}
	pub := EncodePublic(k.Public().(ed25519.PublicKey))
	back, err := DecodePublic(pub)
	if err != nil || !bytes.Equal(back, k.Public().(ed25519.PublicKey)) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := DecodePublic("abc"); err == nil {
		t.Fatal("DecodePublic accepted junk")
	}
}

func TestTokens(t *testing.T) {
	tok, err := NewToken(Fingerprint([]byte("ca")))
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseToken(tok.String())
	if err != nil || back != tok {
		t.Fatalf("ParseToken(%q) = %+v, %v", tok, back, err)
	}
	plain, _ := NewToken("")
	if back, err := ParseToken(plain.String()); err != nil || back != plain {
		t.Fatalf("token without fingerprint: %+v %v", back, err)
	}
	for _, bad := range []string{"", "lt1.", "lt2.abc", "lt1.short", tok.String() + "zz", "lt1." + tok.Secret + ".nothex"} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrToken) {
			t.Errorf("ParseToken(%q) = %v, want ErrToken", bad, err)
		}
	}
}

func FuzzOpen(f *testing.F) {
	k, _ := NewKey()
	env, _ := Sign(k, "k1", []byte("x"))
	f.Add(env)
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := Open(data, k.Public().(ed25519.PublicKey), "k1"); err == nil && !bytes.Equal(p, []byte("x")) {
			t.Fatalf("forged envelope opened: %q", p)
		}
	})
}
