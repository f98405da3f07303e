package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"linli/hub/pgstore"
	"linli/shared/test/testkit"
)

// The audit log is a table an operator queries by time, actor and
// action; the redacted request body is JSON PostgreSQL reads.
func TestAuditLogIsQueryable(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	ops := st.Operators()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	for i, e := range []pgstore.AuditEntry{
		{Who: "op1", Method: "PATCH", Path: "/api/v1/reports/k1.1", Status: 200, Body: []byte(`{"status":"accepted"}`)},
		{Who: "boss", Method: "POST", Path: "/api/v1/operators", Status: 201, Body: []byte(`{"name":"op2","password":"[redacted]"}`)},
		{Who: "op1", Method: "PATCH", Path: "/api/v1/reports/k1.2", Status: 403},
		{Who: "", Method: "DELETE", Path: "/api/v1/devices/k1", Status: 401, Note: "the bearer token is not valid"},
	} {
		e.Time = t0.Add(time.Duration(i) * time.Hour)
		got, err := ops.AppendAudit(e)
		if err != nil || got.Seq != uint64(i+1) {
			t.Fatalf("append %d: seq %d, %v", i, got.Seq, err)
		}
	}
	ctx := context.Background()
	var n int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE actor = 'op1' AND method = 'PATCH'
		AND path LIKE '/api/v1/reports/%' AND at >= $1 AND at < $2`, t0, t0.Add(3*time.Hour)).Scan(&n); err != nil || n != 2 {
		t.Fatalf("op1's report edits in the window: %d, %v", n, err)
	}
	var who string
	if err := st.Pool().QueryRow(ctx, `SELECT body->>'name' FROM audit_log WHERE path = '/api/v1/operators'`).Scan(&who); err != nil || who != "op2" {
		t.Fatalf("body field: %q, %v", who, err)
	}
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE status >= 400`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("refused writes: %d, %v", n, err)
	}
	page, err := ops.AuditLog("op1", 3, 10)
	if err != nil || len(page) != 1 || page[0].Seq != 1 || string(page[0].Body) != `{"status":"accepted"}` || !page[0].Time.Equal(t0) {
		t.Fatalf("op1's entries before 3: %+v, %v", page, err)
	}

	// Accounts: one per name.
	a := pgstore.Account{Name: "op1", Role: "operator", Created: t0, Updated: t0, Hash: []byte("h")}
	if err := ops.CreateAccount(a); err != nil {
		t.Fatal(err)
	}
	if err := ops.CreateAccount(a); !errors.Is(err, pgstore.ErrExists) {
		t.Fatalf("second account of a name: %v, want ErrExists", err)
	}
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM operator_accounts WHERE role = 'operator' AND NOT disabled`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("active operators: %d, %v", n, err)
	}
}
