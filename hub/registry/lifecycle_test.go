package registry_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linli/hub/registry"
	"linli/shared/event"
)

// Issue names the field it refuses; nothing is stored for a refused token.
func TestIssueRefusesBadFields(t *testing.T) { forEachStore(t, testIssueRefuses) }

func testIssueRefuses(t *testing.T, r *registry.Registry, _ func() *registry.Registry) {
	enroll(t, r, "kiosk-1", false, newKey(t))
	for _, tc := range []struct {
		name, id, site, role, field string
	}{
		{"bad id", "kiosk 1", "s1", "kiosk", "id"},
		{"reserved all", "all", "s1", "kiosk", "id"},
		{"reserved hub", "hub", "s1", "kiosk", "id"},
		{"reserved hub-", "hub-2", "s1", "kiosk", "id"},
		{"bad site", "kiosk-2", "s 1", "kiosk", "site"},
		{"unknown role", "kiosk-2", "s1", "printer", "role"},
		{"another site's device", "kiosk-1", "s2", "kiosk", "site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := r.Issue(tc.id, tc.site, tc.role, "", time.Hour, true)
			var fe *event.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Issue: %v, want a field error on %q", err, tc.field)
			}
		})
	}
}

// A token enrolls once; an expired one not at all, and it is spent too.
func TestTokensAreOneTimeAndExpire(t *testing.T) { forEachStore(t, testTokensExpire) }

func testTokensExpire(t *testing.T, r *registry.Registry, _ func() *registry.Registry) {
	tok, exp, err := r.Issue("kiosk-1", "s1", "kiosk", "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	if until := time.Until(exp); until < 59*time.Minute || until > time.Hour {
		t.Errorf("token expires in %v, want an hour", until)
	}
	if _, _, err := r.Enroll(tok.String(), newKey(t)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Enroll(tok.String(), newKey(t)); !errors.Is(err, registry.ErrTokenUnknown) {
		t.Errorf("second use of a token: %v, want registry.ErrTokenUnknown", err)
	}
	if _, _, err := r.Enroll("lt1.not-a-token", newKey(t)); err == nil {
		t.Error("a malformed token enrolled")
	}

	late, _, err := r.Issue("kiosk-2", "s1", "kiosk", "", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	registry.SetNow(r, func() time.Time { return time.Now().Add(2 * time.Minute) })
	if _, _, err := r.Enroll(late.String(), newKey(t)); !errors.Is(err, registry.ErrTokenExpired) {
		t.Errorf("expired token: %v, want registry.ErrTokenExpired", err)
	}
	registry.SetNow(r, time.Now)
	if _, _, err := r.Enroll(late.String(), newKey(t)); !errors.Is(err, registry.ErrTokenUnknown) {
		t.Errorf("an expired token tried again: %v, want registry.ErrTokenUnknown (it is spent)", err)
	}
	if _, ok := r.Get("kiosk-2"); ok {
		t.Error("an expired token enrolled its device")
	}
}

// Credentials: only the device's own id as user name with its password,
// and nothing once revoked; what the registry holds survives a reopen, and
// every enrollment and revocation is announced.
func TestCredentialsRevokeAndReopen(t *testing.T) { forEachStore(t, testCredentials) }

func testCredentials(t *testing.T, r *registry.Registry, reopen func() *registry.Registry) {
	var changes []string
	r.OnChange(func(d registry.Device) {
		changes = append(changes, d.ID+map[bool]string{true: " revoked", false: " enrolled"}[!d.Revoked.IsZero()])
	})
	key := newKey(t)
	_, pw := enroll(t, r, "kiosk-1", false, key)
	enroll(t, r, "kiosk-2", false, newKey(t))

	for _, tc := range []struct {
		name, client, user, pass string
		want                     error
	}{
		{"own login", "kiosk-1", "kiosk-1", pw, nil},
		{"wrong password", "kiosk-1", "kiosk-1", pw + "x", registry.ErrCredentials},
		{"another's user name", "kiosk-1", "kiosk-2", pw, registry.ErrCredentials},
		{"its password under another id", "kiosk-2", "kiosk-2", pw, registry.ErrCredentials},
		{"unknown", "kiosk-9", "kiosk-9", pw, registry.ErrUnknown},
	} {
		site, err := r.Authenticate(tc.client, tc.user, []byte(tc.pass))
		if !errors.Is(err, tc.want) || (tc.want == nil && site != "s1") {
			t.Errorf("%s: %q, %v; want %v", tc.name, site, err, tc.want)
		}
	}
	if pub, known, err := r.Key("kiosk-1"); err != nil || !known || !pub.Equal(key) {
		t.Errorf("Key(kiosk-1) = %x, %v, %v", pub, known, err)
	}
	if _, err := r.Revoke("kiosk-9"); !errors.Is(err, registry.ErrUnknown) {
		t.Errorf("revoke of an unknown id: %v, want registry.ErrUnknown", err)
	}
	if _, err := r.Revoke("kiosk-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate("kiosk-1", "kiosk-1", []byte(pw)); !errors.Is(err, registry.ErrRevoked) {
		t.Errorf("a revoked device's login: %v, want registry.ErrRevoked", err)
	}
	if _, known, err := r.Key("kiosk-1"); !known || !errors.Is(err, registry.ErrRevoked) {
		t.Errorf("Key of a revoked device: known %v, %v; want known and registry.ErrRevoked (its messages must still be signed)", known, err)
	}
	if want := "kiosk-1 enrolled,kiosk-2 enrolled,kiosk-1 revoked"; strings.Join(changes, ",") != want {
		t.Errorf("changes announced: %v, want %s", changes, want)
	}

	r = reopen()
	if d, ok := r.Get("kiosk-1"); !ok || d.Active() {
		t.Errorf("kiosk-1 after reopen: %+v, %v; want it known and revoked", d, ok)
	}
	if _, err := r.Authenticate("kiosk-2", "kiosk-2", []byte("x")); !errors.Is(err, registry.ErrCredentials) {
		t.Errorf("kiosk-2 after reopen: %v, want it known (registry.ErrCredentials for a wrong password)", err)
	}
	if ids := len(r.List()); ids != 2 {
		t.Errorf("%d devices after reopen, want 2", ids)
	}
}

// Mosquitto's files list the hub and a broker bridge with every linli/
// topic and each active device with exactly its own topics; a revoked
// device is gone from both.
func TestWriteMosquittoFollowsRevocation(t *testing.T) { forEachStore(t, testWriteMosquitto) }

func testWriteMosquitto(t *testing.T, r *registry.Registry, _ func() *registry.Registry) {
	enroll(t, r, "kiosk-1", false, newKey(t))
	enroll(t, r, "kiosk-2", false, newKey(t))
	if _, err := r.Revoke("kiosk-2"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "mosquitto")
	files := registry.MosquittoFiles{Dir: dir, GID: -1, Bridges: []registry.Login{{User: "hub-a-bridge", Password: "bpw"}}}
	if err := r.WriteMosquitto(files, "hub-a", "pw"); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	passwd, acl := read(registry.MosquittoPasswd), read(registry.MosquittoACL)
	for _, want := range []string{"hub-a:$7$", "hub-a-bridge:$7$", "kiosk-1:$7$"} {
		if !strings.Contains(passwd, want) {
			t.Errorf("passwd has no %q:\n%s", want, passwd)
		}
	}
	for _, want := range []string{"user hub-a\ntopic readwrite linli/#", "user hub-a-bridge\ntopic readwrite linli/#", "user kiosk-1\ntopic write linli/v1/s1/kiosk-1/up\n",
		"topic read linli/v1/s1/kiosk-1/down\n", "topic read linli/v1/s1/all/down\n"} {
		if !strings.Contains(acl, want) {
			t.Errorf("acl has no %q:\n%s", want, acl)
		}
	}
	if strings.Contains(passwd+acl, "kiosk-2") {
		t.Errorf("the revoked kiosk-2 is still in Mosquitto's files:\n%s\n%s", passwd, acl)
	}
	for _, name := range []string{registry.MosquittoPasswd, registry.MosquittoACL} {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v (%v), want 0640", name, info.Mode(), err)
		}
	}
}
