package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/hub/operators"
	"linli/shared/kv"
)

const (
	auditPW   = "brand-new-secret-pw-7"
	auditCard = "26:123:45678"
)

func hubConfig(dir string) Config {
	return Config{Data: dir, HTTP: "127.0.0.1:0", MQTTListen: "127.0.0.1:0", ID: "hub",
		Profile: "small", LogLevel: "info", MaxGroup: 20000, AllowUnenrolled: true, TokenTTL: time.Hour, TLS: "auto"}
}

// send makes a request the way curl -d does: JSON with curl's default
// form Content-Type.
func send(t *testing.T, method, url string, hdr map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, out
}

// grepDir reports the files under dir that contain any of secrets.
func grepDir(t *testing.T, dir string, secrets ...string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				hits = append(hits, filepath.Base(path)+": "+s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// A password change and an access list sent as curl sends them (JSON as
// a form) are taken, and neither the audit log read through the API nor
// any file of the hub's store holds the password or a card.
func TestNoSecretStoredWhateverTheContentType(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h, err := Start(context.Background(), hubConfig(dir), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			h.Stop()
		}
	})
	base, admin := h.HTTPURL(), map[string]string{"Authorization": "Bearer " + h.AdminToken()}

	if resp, out := send(t, "POST", base+"/api/v1/operators", admin,
		`{"name":"op1","password":"first-password-1","role":"operator"}`); resp.StatusCode != 201 {
		t.Fatalf("create operator: %d %s", resp.StatusCode, out)
	}
	resp, out := send(t, "POST", base+"/api/v1/login", nil, `{"name":"op1","password":"first-password-1"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, out)
	}
	var sess struct{ CSRF string }
	if err := json.Unmarshal(out, &sess); err != nil {
		t.Fatal(err)
	}
	var cookie string
	for _, c := range resp.Cookies() {
		cookie = c.Name + "=" + c.Value
	}
	op := map[string]string{"Cookie": cookie, "X-CSRF-Token": sess.CSRF}
	if resp, out := send(t, "POST", base+"/api/v1/session/password", op,
		`{"old":"first-password-1","new":"`+auditPW+`"}`); resp.StatusCode != 204 {
		t.Fatalf("password change: %d %s", resp.StatusCode, out)
	}
	if resp, out := send(t, "PUT", base+"/api/v1/access-lists/s1/B3", admin,
		`{"doors":{"B3-main":["`+auditCard+`"],"B3-back":[]}}`); resp.StatusCode/100 != 2 {
		t.Fatalf("access list: %d %s", resp.StatusCode, out)
	}
	// A body that does not parse is kept as its size only.
	send(t, "PATCH", base+"/api/v1/operators/op1", admin, `{"password":"`+auditPW+`"`)

	resp, out = send(t, "GET", base+"/api/v1/audit", admin, "")
	if resp.StatusCode != 200 {
		t.Fatalf("audit: %d %s", resp.StatusCode, out)
	}
	for _, want := range []string{`"path":"/api/v1/session/password"`, `"path":"/api/v1/access-lists/s1/B3"`, `"doors":"[redacted]"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("audit log lacks %s: %s", want, out)
		}
	}
	if strings.Contains(string(out), auditPW) || strings.Contains(string(out), auditCard) {
		t.Fatalf("a secret in the audit log: %s", out)
	}
	stopped = true
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if hits := grepDir(t, filepath.Join(dir, "store"), auditPW, auditCard); len(hits) > 0 {
		t.Fatalf("secrets in the store's files: %v", hits)
	}
}

// A store an older hub wrote, with secrets in clear in its audit log:
// the hub rewrites those entries at start and compacts the store so that
// the old values are gone from its files, not only from what it reads.
func TestHubPurgesSecretsAnOlderHubStored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	db, err := kv.Open(storeDir, kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// What an older hub stored for a password change and an access list
	// sent with curl's default Content-Type: the JSON text as a form
	// field's name.
	old := []string{
		`{"seq":1,"time":"2026-11-01T09:00:00Z","who":"op1","method":"POST","path":"/api/v1/session/password","status":204,` +
			`"body":{"{\"old\":\"first-password-1\",\"new\":\"` + auditPW + `\"}":""}}`,
		`{"seq":2,"time":"2026-11-01T09:00:01Z","who":"admin","method":"PUT","path":"/api/v1/access-lists/s1/B3","status":200,` +
			`"body":{"{\"doors\":{\"B3-main\":[\"` + auditCard + `\"]}}":""}}`,
	}
	if err := db.Update(func(txn *badger.Txn) error {
		for i, v := range old {
			if err := txn.Set(kv.Key("op/audit/", kv.U64(uint64(i+1))), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := grepDir(t, storeDir, auditPW, auditCard); len(hits) != 2 {
		t.Fatalf("the old store should hold both secrets: %v", hits)
	}

	h, err := Start(context.Background(), hubConfig(dir), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, out := send(t, "GET", h.HTTPURL()+"/api/v1/audit", map[string]string{"Authorization": "Bearer " + h.AdminToken()}, "")
	if stopErr := h.Stop(); stopErr != nil {
		t.Fatal(stopErr)
	}
	if resp.StatusCode != 200 || !strings.Contains(string(out), `"path":"/api/v1/access-lists/s1/B3"`) {
		t.Fatalf("audit: %d %s", resp.StatusCode, out)
	}
	if strings.Contains(string(out), auditPW) || strings.Contains(string(out), auditCard) {
		t.Fatalf("a secret in the audit log: %s", out)
	}
	if hits := grepDir(t, storeDir, auditPW, auditCard); len(hits) > 0 {
		t.Fatalf("secrets left in the store's files after the rewrite: %v", hits)
	}
}

// An older hub that rewrote the audit entries and crashed before it
// purged the old values: the rewrite finds nothing more to do, yet the
// old values are still in the store's tables. The migration flattens the
// store whatever the rewrite found, so the next start removes them.
func TestHubPurgesSecretsAfterACrashBeforeThePurge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	db, err := kv.Open(storeDir, kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	old := `{"seq":1,"time":"2026-11-01T09:00:00Z","who":"op1","method":"POST","path":"/api/v1/session/password","status":204,` +
		`"body":{"{\"old\":\"first-password-1\",\"new\":\"` + auditPW + `\"}":""}}`
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(kv.Key("op/audit/", kv.U64(1)), []byte(old)) }); err != nil {
		t.Fatal(err)
	}
	if n, err := operators.RedactStoredAudit(db); err != nil || n != 1 {
		t.Fatalf("rewrite: %d %v", n, err)
	}
	if err := db.Close(); err != nil { // the crash: no purge
		t.Fatal(err)
	}
	if hits := grepDir(t, storeDir, auditPW); len(hits) == 0 {
		t.Fatal("the old value should still be in the store's files")
	}
	h, err := Start(context.Background(), hubConfig(dir), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if hits := grepDir(t, storeDir, auditPW); len(hits) > 0 {
		t.Fatalf("secrets left in the store's files: %v", hits)
	}
}

// The hub started with a trusted proxy takes the client from
// X-Forwarded-For for the audit log; without one it keeps the peer.
func TestHubTrustedProxiesNameTheClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		proxies []string
		want    string
	}{
		{[]string{"127.0.0.1"}, "198.51.100.4"},
		{nil, "127.0.0.1"},
	} {
		cfg := hubConfig(t.TempDir())
		cfg.TrustedProxies = tc.proxies
		h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		send(t, "POST", h.HTTPURL()+"/api/v1/login", map[string]string{"X-Forwarded-For": "198.51.100.4"},
			`{"name":"nobody","password":"wrong-password"}`)
		resp, out := send(t, "GET", h.HTTPURL()+"/api/v1/audit", map[string]string{"Authorization": "Bearer " + h.AdminToken()}, "")
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		var es []struct{ Who, Client string }
		if err := json.Unmarshal(out, &es); err != nil || resp.StatusCode != 200 || len(es) != 1 {
			t.Fatalf("audit: %d %s (%v)", resp.StatusCode, out, err)
		}
		if es[0].Who != "nobody" || es[0].Client != tc.want {
			t.Errorf("trusted %v: the failed login logged from %q, want %q", tc.proxies, es[0].Client, tc.want)
		}
	}
}
