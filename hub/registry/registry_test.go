package registry_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"linli/hub/pgstore"
	"linli/hub/registry"
	"linli/shared/kv"
	"linli/shared/test/testkit"
)

// TestMain stops the tests' PostgreSQL, then checks that every goroutine a
// test started is gone.
func TestMain(m *testing.M) { testkit.PostgresMain(m) }

// storeImpl opens one implementation of the registry's Store; reopen
// opens a new Registry on the same data.
type storeImpl struct {
	name string
	open func(t *testing.T) (reg *registry.Registry, reopen func() *registry.Registry)
}

var storeImpls = []storeImpl{
	{"badger", func(t *testing.T) (*registry.Registry, func() *registry.Registry) {
		db, err := kv.Open(t.TempDir(), kv.Small, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		open := func() *registry.Registry { return openOn(t, registry.NewBadgerStore(db)) }
		return open(), open
	}},
	{"postgres", func(t *testing.T) (*registry.Registry, func() *registry.Registry) {
		url := testkit.StartPostgres(t)
		open := func() *registry.Registry {
			st, err := pgstore.Open(context.Background(), url, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return openOn(t, st.Registry())
		}
		return open(), open
	}},
}

func openOn(t *testing.T, st registry.Store) *registry.Registry {
	t.Helper()
	r, err := registry.Open(st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// forEachStore runs f against every implementation of the registry's Store.
func forEachStore(t *testing.T, f func(t *testing.T, r *registry.Registry, reopen func() *registry.Registry)) {
	for _, impl := range storeImpls {
		t.Run(impl.name, func(t *testing.T) {
			r, reopen := impl.open(t)
			f(t, r, reopen)
		})
	}
}

func newKey(t *testing.T) ed25519.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func enroll(t *testing.T, r *registry.Registry, id string, replace bool, pub ed25519.PublicKey) (registry.Device, string) {
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
func TestReplace(t *testing.T) { forEachStore(t, testReplace) }

func testReplace(t *testing.T, r *registry.Registry, reopen func() *registry.Registry) {
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	d, pw1 := enroll(t, r, "kiosk-1", false, k1)
	if d.SeqBase != 0 || len(d.Previous) != 0 {
		t.Fatalf("first enrollment: base %d, %d past keys", d.SeqBase, len(d.Previous))
	}
	if _, _, err := r.Issue("kiosk-1", "s1", "kiosk", "", time.Hour, false); !errors.Is(err, registry.ErrEnrolled) {
		t.Fatalf("issue for an enrolled id without replace: %v, want ErrEnrolled", err)
	}
	// A token issued before the first enrollment does not replace either.
	early, _, err := r.Issue("kiosk-9", "s1", "kiosk", "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	enroll(t, r, "kiosk-9", false, newKey(t))
	if _, _, err := r.Enroll(early.String(), newKey(t)); !errors.Is(err, registry.ErrEnrolled) {
		t.Fatalf("second token of a new id: %v, want ErrEnrolled", err)
	}

	d, pw2 := enroll(t, r, "kiosk-1", true, k2)
	if d.SeqBase != registry.SeqSpan || len(d.Previous) != 1 || d.Previous[0].From != 0 || d.Previous[0].Below != registry.SeqSpan {
		t.Fatalf("after one replacement: base %d, past %+v", d.SeqBase, d.Previous)
	}
	d, _ = enroll(t, r, "kiosk-1", true, k3)
	if d.SeqBase != 2*registry.SeqSpan || len(d.Previous) != 2 || d.Previous[1].From != registry.SeqSpan || d.Previous[1].Below != 2*registry.SeqSpan {
		t.Fatalf("after two replacements: base %d, past %+v", d.SeqBase, d.Previous)
	}
	// The same key enrolling again keeps its numbering.
	if d2, _ := enroll(t, r, "kiosk-1", true, k3); d2.SeqBase != d.SeqBase || len(d2.Previous) != 2 {
		t.Fatalf("same key again: base %d, %d past keys", d2.SeqBase, len(d2.Previous))
	}
	for _, tc := range []struct {
		key  ed25519.PublicKey
		want string
	}{{k1, registry.IdentityReplaced}, {k2, registry.IdentityReplaced}, {k3, registry.IdentityOK}, {newKey(t), ""}} {
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
		if got := d.Identity(k); got != registry.IdentityRevoked {
			t.Errorf("after revoke: %q, want revoked", got)
		}
	}
	if _, err := r.Authenticate("kiosk-1", "kiosk-1", []byte(pw1)); !errors.Is(err, registry.ErrRevoked) {
		t.Errorf("a revoked id's past login: %v, want ErrRevoked", err)
	}
	// A device enrolled after the revoke never trusts the revoked keys.
	d, _ = enroll(t, r, "kiosk-1", true, newKey(t))
	if d.SeqBase != 3*registry.SeqSpan || d.Identity(k1) != registry.IdentityRevoked || d.Identity(k3) != registry.IdentityRevoked {
		t.Fatalf("after revoke and replace: base %d, k1 %q, k3 %q", d.SeqBase, d.Identity(k1), d.Identity(k3))
	}
	if _, err := r.Authenticate("kiosk-1", "kiosk-1", []byte(pw1)); !errors.Is(err, registry.ErrCredentials) {
		t.Errorf("a revoked key's login after a replacement: %v, want ErrCredentials", err)
	}
}

// What the registry stores comes back whole from a reopened store: every
// field of every device, past keys, revocation, logins, resident keys.
func TestReopenKeepsEverything(t *testing.T) { forEachStore(t, testReopen) }

func testReopen(t *testing.T, r *registry.Registry, reopen func() *registry.Registry) {
	_, pwA := enroll(t, r, "kiosk-a", false, newKey(t))
	enroll(t, r, "kiosk-a", true, newKey(t))
	_, pwB := enroll(t, r, "kiosk-b", false, newKey(t))
	enroll(t, r, "kiosk-c", false, newKey(t))
	if _, err := r.Revoke("kiosk-c"); err != nil {
		t.Fatal(err)
	}
	keyS1, err := r.ResidentKey("s1")
	if err != nil {
		t.Fatal(err)
	}
	pending, _, err := r.Issue("gw-1", "s2", "gateway", "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	before := r.List()

	r2 := reopen()
	after := r2.List()
	if len(after) != len(before) {
		t.Fatalf("reopened: %d devices, want %d", len(after), len(before))
	}
	for i := range before {
		if err := sameDevice(before[i], after[i]); err != nil {
			t.Errorf("reopened %s: %v", before[i].ID, err)
		}
	}
	if _, err := r2.Authenticate("kiosk-a", "kiosk-a", []byte(pwA)); err != nil {
		t.Errorf("replaced key's login after reopen: %v", err)
	}
	if site, err := r2.Authenticate("kiosk-b", "kiosk-b", []byte(pwB)); err != nil || site != "s1" {
		t.Errorf("login after reopen: site %q, %v", site, err)
	}
	if _, err := r2.Authenticate("kiosk-c", "kiosk-c", []byte("x")); !errors.Is(err, registry.ErrRevoked) {
		t.Errorf("revoked device after reopen: %v, want ErrRevoked", err)
	}
	if k, err := r2.ResidentKey("s1"); err != nil || string(k) != string(keyS1) {
		t.Errorf("resident key after reopen changed (%v)", err)
	}
	if k, err := r2.ResidentKey("s2"); err != nil || len(k) != 32 || string(k) == string(keyS1) {
		t.Errorf("another site's resident key: %x, %v", k, err)
	}
	// A token issued before the reopen is still good, once.
	pub := newKey(t)
	d, _, err := r2.Enroll(pending.String(), pub)
	if err != nil || d.Site != "s2" || d.Role != "gateway" || string(d.PublicKey) != string(pub) {
		t.Fatalf("enroll with a token from before the reopen: %+v, %v", d, err)
	}
	if _, _, err := r2.Enroll(pending.String(), newKey(t)); !errors.Is(err, registry.ErrTokenUnknown) {
		t.Errorf("second use of a token: %v, want ErrTokenUnknown", err)
	}
}

// sameDevice compares two records field by field (times by instant).
func sameDevice(a, b registry.Device) error {
	if a.ID != b.ID || a.Site != b.Site || a.Role != b.Role || a.Mosquitto != b.Mosquitto || a.SeqBase != b.SeqBase ||
		string(a.PublicKey) != string(b.PublicKey) || string(a.PassSalt) != string(b.PassSalt) || string(a.PassHash) != string(b.PassHash) ||
		!a.Enrolled.Equal(b.Enrolled) || !a.Revoked.Equal(b.Revoked) || len(a.Previous) != len(b.Previous) {
		return fmt.Errorf("%+v, want %+v", b, a)
	}
	for i, k := range a.Previous {
		l := b.Previous[i]
		if string(k.PublicKey) != string(l.PublicKey) || string(k.PassSalt) != string(l.PassSalt) || string(k.PassHash) != string(l.PassHash) ||
			k.From != l.From || k.Below != l.Below || !k.Replaced.Equal(l.Replaced) || k.Revoked != l.Revoked || k.Mosquitto != l.Mosquitto {
			return fmt.Errorf("past key %d: %+v, want %+v", i, l, k)
		}
	}
	return nil
}

// A token is good once: of enrollments racing with one token exactly one
// succeeds, and an expired token is refused and enrolls nothing.
func TestTokenIsUsedOnce(t *testing.T) { forEachStore(t, testTokenOnce) }

func testTokenOnce(t *testing.T, r *registry.Registry, _ func() *registry.Registry) {
	tok, _, err := r.Issue("kiosk-1", "s1", "kiosk", "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	const racers = 6
	errs := make(chan error, racers)
	for range racers {
		go func() {
			_, _, err := r.Enroll(tok.String(), newKey(t))
			errs <- err
		}()
	}
	ok := 0
	for range racers {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case errors.Is(err, registry.ErrTokenUnknown):
		default:
			t.Errorf("racing enrollment: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d enrollments with one token succeeded, want 1", ok)
	}

	old, _, err := r.Issue("kiosk-2", "s1", "kiosk", "", -time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Enroll(old.String(), newKey(t)); !errors.Is(err, registry.ErrTokenExpired) {
		t.Fatalf("expired token: %v, want ErrTokenExpired", err)
	}
	if _, ok := r.Get("kiosk-2"); ok {
		t.Fatal("an expired token enrolled its device")
	}
}

// Concurrent first uses of a site's resident key agree on one key.
func TestResidentKeyIsOnePerSite(t *testing.T) { forEachStore(t, testResidentKey) }

func testResidentKey(t *testing.T, r *registry.Registry, _ func() *registry.Registry) {
	const callers = 6
	keys := make(chan []byte, callers)
	for range callers {
		go func() {
			k, err := r.ResidentKey("s9")
			if err != nil {
				t.Errorf("resident key: %v", err)
			}
			keys <- k
		}()
	}
	first := <-keys
	for range callers - 1 {
		if k := <-keys; string(k) != string(first) {
			t.Fatalf("two keys for one site: %x and %x", first, k)
		}
	}
}
