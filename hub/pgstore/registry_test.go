package pgstore_test

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"testing"
	"time"

	"linli/hub/registry"
	"linli/shared/test/testkit"
)

// The registry's tables answer an operator's questions in SQL: which
// devices of a site are enrolled, in which role and state, since when,
// and which keys each id had.
func TestRegistryTablesAreQueryable(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	r, err := registry.Open(st.Registry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	enroll := func(id, site, role string, replace bool) {
		t.Helper()
		tok, _, err := r.Issue(id, site, role, "", time.Hour, replace)
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(nil)
		if _, _, err := r.Enroll(tok.String(), pub); err != nil {
			t.Fatal(err)
		}
	}
	enroll("kiosk-b1", "xiangyang", "kiosk", false)
	enroll("kiosk-b1", "xiangyang", "kiosk", true)
	enroll("gw-b3", "xiangyang", "gateway", false)
	enroll("kiosk-x", "other", "kiosk", false)
	if _, err := r.Revoke("gw-b3"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Issue("kiosk-b2", "xiangyang", "kiosk", "", time.Hour, false); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	rows, err := st.Pool().Query(ctx, `SELECT d.id, d.role, d.state, d.enrolled_at IS NOT NULL, d.revoked_at IS NOT NULL,
		(SELECT count(*) FROM enrolled_device_past_keys k WHERE k.device = d.id)
		FROM enrolled_devices d WHERE d.site = 'xiangyang' ORDER BY d.id`)
	if err != nil {
		t.Fatal(err)
	}
	type dev struct {
		id, role, state   string
		enrolled, revoked bool
		pastKeys          int
	}
	var got []dev
	for rows.Next() {
		var d dev
		if err := rows.Scan(&d.id, &d.role, &d.state, &d.enrolled, &d.revoked, &d.pastKeys); err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []dev{{"gw-b3", "gateway", "revoked", true, true, 0}, {"kiosk-b1", "kiosk", "active", true, false, 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("devices of the site: %+v, want %+v", got, want)
	}
	var pending string
	if err := st.Pool().QueryRow(ctx, "SELECT device FROM enrollment_tokens WHERE site = 'xiangyang' AND expires_at > now()").Scan(&pending); err != nil || pending != "kiosk-b2" {
		t.Fatalf("pending enrollment: %q, %v", pending, err)
	}
}
