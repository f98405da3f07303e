package server

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"linli/shared/identity"
	"linli/shared/test/testkit"
)

// With the store setting, everything the hub keeps lives in PostgreSQL: a
// second hub with a data directory of its own, on the same database,
// knows the operator, the device and the activity the first one made, and
// the rows are in the tables. The hub makes no store in its data dir; a
// backup on demand answers 501 naming PostgreSQL's own tools; readiness
// writes to the database.
func TestHubOnPostgres(t *testing.T) {
	t.Parallel()
	url := testkit.StartPostgres(t)
	start := func() *Hub {
		cfg := hubConfig(t.TempDir())
		cfg.Store = url
		h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	call := func(h *Hub, method, path, body string, bearer bool) (int, []byte) {
		t.Helper()
		hdr := map[string]string{}
		if bearer {
			hdr["Authorization"] = "Bearer " + h.AdminToken()
		}
		resp, out := send(t, method, h.HTTPURL()+path, hdr, body)
		return resp.StatusCode, out
	}

	h1 := start()
	if code, out := call(h1, "POST", "/api/v1/activities", `{"id":"A7","title":"太极拳晨练","kind":"activity","site":"s1","start":"2026-12-01T07:00:00+08:00","capacity":30}`, true); code != 201 {
		t.Fatalf("create activity: %d %s", code, out)
	}
	if code, out := call(h1, "GET", "/api/v1/backup", "", true); code != 501 || !strings.Contains(string(out), "pg_basebackup") {
		t.Fatalf("backup on PostgreSQL: %d %s, want 501 naming PostgreSQL's tools", code, out)
	}
	if code, out := call(h1, "GET", "/readyz", "", false); code != 200 {
		t.Fatalf("readyz: %d %s", code, out)
	}
	if code, out := call(h1, "GET", "/metrics", "", true); code != 200 || !strings.Contains(string(out), "linli_hub_store_commit_retries_total 0") {
		t.Fatalf("metrics on PostgreSQL: %d, want linli_hub_store_commit_retries_total 0 in:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(h1.cfg.Data, "store")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a hub on PostgreSQL made a store in its data dir: %v", err)
	}
	if code, out := call(h1, "POST", "/api/v1/operators", `{"name":"op1","password":"operator-one-pw","role":"operator","sites":["s1"]}`, true); code != 201 {
		t.Fatalf("create operator: %d %s", code, out)
	}
	code, out := call(h1, "POST", "/api/v1/devices", `{"id":"kiosk-1","site":"s1","role":"kiosk"}`, true)
	if code != 201 {
		t.Fatalf("issue enrollment token: %d %s", code, out)
	}
	var issued struct{ Token string }
	if err := json.Unmarshal(out, &issued); err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(identity.EnrollRequest{Token: issued.Token, PublicKey: identity.EncodePublic(pub)})
	if code, out := call(h1, "POST", "/api/v1/enroll", string(req), false); code != 200 && code != 201 {
		t.Fatalf("enroll: %d %s", code, out)
	}
	if err := h1.Stop(); err != nil {
		t.Fatal(err)
	}

	h2 := start()
	t.Cleanup(func() {
		if err := h2.Stop(); err != nil {
			t.Error(err)
		}
	})
	if code, out := call(h2, "POST", "/api/v1/login", `{"name":"op1","password":"operator-one-pw"}`, false); code != 200 {
		t.Fatalf("login at the second hub: %d %s", code, out)
	}
	if code, out := call(h2, "GET", "/api/v1/activities/A7", "", true); code != 200 || !strings.Contains(string(out), "太极拳晨练") {
		t.Fatalf("the first hub's activity at the second: %d %s", code, out)
	}
	if code, out := call(h2, "POST", "/api/v1/devices", `{"id":"kiosk-1","site":"s1","role":"kiosk"}`, true); code != 409 {
		t.Fatalf("issue for the device the first hub enrolled: %d %s, want 409 (enrolled)", code, out)
	}
	if code, out := call(h2, "POST", "/api/v1/enroll", string(req), false); code != 403 || !strings.Contains(string(out), "already used") {
		t.Fatalf("the spent token at the second hub: %d %s, want 403 (already used)", code, out)
	}

	ctx := context.Background()
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var state, site string
	if err := db.QueryRow(ctx, "SELECT state, site FROM enrolled_devices WHERE id = 'kiosk-1'").Scan(&state, &site); err != nil || state != "active" || site != "s1" {
		t.Fatalf("enrolled_devices row: %q %q, %v", state, site, err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE actor = 'admin' AND method = 'POST'
		AND path IN ('/api/v1/operators', '/api/v1/devices')`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("admin's writes in audit_log: %d, %v; want 3 (two hubs' worth)", n, err)
	}
	if err := db.QueryRow(ctx, "SELECT count(*) FROM operator_sessions WHERE account = 'op1'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("op1's sessions: %d, %v", n, err)
	}
}
