package operators

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/crypto/bcrypt"

	"linli/shared/kv"
)

const (
	secretPW   = "new-secret-pw-42"
	secretCard = "26:123:45678"
)

func TestRedactReadsEveryBodyByOneRule(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	pwJSON := `{"old":"old-secret-pw-1","new":"` + secretPW + `"}`
	for _, tc := range []struct {
		name, ctype, body string
		want              string // the stored body, exactly
	}{
		{"json as json", "application/json", pwJSON, `{"new":"[redacted]","old":"[redacted]"}`},
		{"json as form (curl -d)", form, pwJSON, `{"new":"[redacted]","old":"[redacted]"}`},
		{"json as form with charset", form + "; charset=utf-8", pwJSON, `{"new":"[redacted]","old":"[redacted]"}`},
		{"json as text", "text/plain", pwJSON, `{"new":"[redacted]","old":"[redacted]"}`},
		{"json without a type", "", pwJSON, `{"new":"[redacted]","old":"[redacted]"}`},
		{"key folded as encoding/json folds", form, `{"Paſſword":"` + secretPW + `"}`, `{"bytes":33}`},
		{"upper case key", "", `{"PASSWORD":"` + secretPW + `"}`, `{"PASSWORD":"[redacted]"}`},
		{"access list", form, `{"doors":{"B3-main":["` + secretCard + `"]}}`, `{"doors":"[redacted]"}`},
		{"nested cards", "", `{"list":[{"door":"B3","cards":["` + secretCard + `"]},{"door":"B4","card":"` + secretCard + `"}]}`,
			`{"list":[{"cards":"[redacted]","door":"B3"},{"card":"[redacted]","door":"B4"}]}`},
		{"nested password", "", `{"change":{"new_password":"` + secretPW + `"},"note":"去看看"}`,
			`{"change":{"new_password":"[redacted]"},"note":"去看看"}`},
		{"form", form, "service_code=facilities&api_key=" + secretPW + "&description=lamp", `{"api_key":"[redacted]","description":"lamp","service_code":"facilities"}`},
		{"form not typed as one", "", "password=" + secretPW, `{"bytes":25}`},
		{"json that does not parse, as form", form, `{"new":"` + secretPW + `",`, `{"bytes":26}`},
		{"json that does not parse", "application/json", `{"new":"` + secretPW + `"`, `{"bytes":25}`},
		{"two objects", "", `{"a":1}{"new":"` + secretPW + `"}`, `{"bytes":33}`},
		{"scalar", "", `"` + secretPW + `"`, `{"bytes":18}`},
		{"array", "", `["` + secretPW + `"]`, `{"bytes":20}`},
		{"text", "text/plain", secretPW, `{"bytes":16}`},
		{"numbers kept as written", "", `{"limit":12345678901234567890}`, `{"limit":12345678901234567890}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(redact(tc.ctype, []byte(tc.body)))
			if got != tc.want {
				t.Errorf("redact(%q, %s) = %s, want %s", tc.ctype, tc.body, got, tc.want)
			}
			if strings.Contains(got, secretPW) || strings.Contains(got, secretCard) {
				t.Errorf("a secret was kept: %s", got)
			}
		})
	}
}

func TestRedactLongBodyKeepsSizeAndFieldNames(t *testing.T) {
	body := `{"note":"` + strings.Repeat("x", 3000) + `","password":"` + secretPW + `"}`
	got := string(redact("", []byte(body)))
	want := `{"bytes":3041,"fields":["note","password"]}`
	if got != want {
		t.Fatalf("long body: %s, want %s", got, want)
	}
}

// Writes through the API: whatever the Content-Type, the audit log has no
// secret, and the query string (an Open311 api_key) is not kept at all.
func TestAuditRedactsWhateverTheContentType(t *testing.T) {
	forEachStore(t, testAuditRedactsWhateverTheContentType)
}

func testAuditRedactsWhateverTheContentType(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	boss := f.login(t, "boss", "the-boss-pw-1")
	op := f.login(t, "op1", "operator-one-pw")
	send := func(c *client, method, path, ctype, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ctype)
		req.AddCookie(&http.Cookie{Name: c.cookie.Name, Value: c.cookie.Value})
		req.Header.Set(CSRFHeader, c.csrf)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	const form = "application/x-www-form-urlencoded"
	if code := send(op, "POST", "/api/v1/session/password", form, `{"old":"operator-one-pw","new":"`+secretPW+`"}`); code != 204 {
		t.Fatalf("password change sent as a form: %d, want 204 (the API reads JSON whatever the type)", code)
	}
	if code := send(boss, "PATCH", "/api/v1/operators/view1", "text/plain", `{"password":"`+secretPW+`x"}`); code != 200 {
		t.Fatalf("password set as text: %d, want 200", code)
	}
	send(boss, "POST", "/api/v1/operators", "", `{"name":"op9","password":"`+secretPW+`y","role":`)
	req, err := http.NewRequest("POST", f.srv.URL+"/open311/v2/requests.json?api_key="+url.QueryEscape(secretPW+"q"), strings.NewReader("service_code=x"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", form)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	code, out, _ := boss.do("GET", "/api/v1/audit", nil)
	if code != 200 {
		t.Fatalf("audit: %d %s", code, out)
	}
	if bytes.Contains(out, []byte(secretPW)) {
		t.Fatalf("a secret reached the audit log: %s", out)
	}
	var es []Entry
	if err := json.Unmarshal(out, &es); err != nil {
		t.Fatal(err)
	}
	bodies := map[string]string{}
	for _, e := range es {
		bodies[e.Method+" "+e.Path] = string(e.Body)
	}
	for k, want := range map[string]string{
		"POST /api/v1/session/password":  `{"new":"[redacted]","old":"[redacted]"}`,
		"PATCH /api/v1/operators/view1":  `{"password":"[redacted]"}`,
		"POST /api/v1/operators":         `{"bytes":52}`,
		"POST /open311/v2/requests.json": `{"service_code":"x"}`,
	} {
		if bodies[k] != want {
			t.Errorf("%s logged %q, want %s (all: %s)", k, bodies[k], want, out)
		}
	}
}

// oldRedact is the redaction of hubs before bodies were read by one rule:
// a form's fields, else a JSON object's top-level fields, secrets at the
// top only; kept to write entries the way those hubs did.
func oldRedact(ctype string, body []byte) json.RawMessage {
	var fields map[string]any
	if strings.HasPrefix(ctype, "application/x-www-form-urlencoded") {
		vals, err := url.ParseQuery(string(body))
		if err == nil {
			fields = map[string]any{}
			for k, v := range vals {
				fields[k] = strings.Join(v, ",")
			}
		}
	} else if err := json.Unmarshal(body, &fields); err != nil {
		fields = nil
	}
	if fields == nil {
		return mustJSON(map[string]int{"bytes": len(body)})
	}
	for k := range fields {
		if map[string]bool{"password": true, "old": true, "new": true, "token": true, "api_key": true,
			"doors": true, "credential": true, "secret": true}[strings.ToLower(k)] {
			fields[k] = "[redacted]"
		}
	}
	out := mustJSON(fields)
	if len(out) > auditKeep {
		return mustJSON(map[string]any{"bytes": len(body), "truncated": string(out[:auditKeep])})
	}
	return out
}

// An older hub's store holds secrets in clear in its audit log; opening
// it rewrites those entries, once, and leaves clean ones as they are.
func TestOpenRedactsAuditEntriesStoredInClear(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	db, err := kv.Open(dir, kv.Small, log)
	if err != nil {
		t.Fatal(err)
	}
	const form = "application/x-www-form-urlencoded"
	long := `{"note":"` + strings.Repeat("x", 2100) + `","list":{"password":"` + secretPW + `"}}`
	old := []struct {
		path, ctype, body string
		want              string // after the rewrite; sizes are of the old stored body
	}{
		{"/api/v1/session/password", form, `{"old":"old-secret-pw-1","new":"` + secretPW + `"}`, `{"bytes":65}`},
		{"/api/v1/access-lists/s1/B3", form, `{"doors":{"B3-main":["` + secretCard + `"],"B3-back":["26:1:2"]}}`, `{"bytes":76}`},
		{"/api/v1/reports/r1", "application/json", `{"status":"accepted","note":"去看看"}`, `{"note":"去看看","status":"accepted"}`},
		{"/api/v1/x", "application/json", `{"list":{"password":"` + secretPW + `"}}`, `{"list":{"password":"[redacted]"}}`},
		{"/api/v1/y", "application/json", long, `{"bytes":2150}`},
		{"/api/v1/operators", "application/json", `{"name":"op3","password":"` + secretPW + `"}`, `{"name":"op3","password":"[redacted]"}`},
	}
	if err := db.Update(func(txn *badger.Txn) error {
		for i, o := range old {
			e := Entry{Seq: uint64(i + 1), Who: "boss", Method: "POST", Path: o.path, Status: 200, Body: oldRedact(o.ctype, []byte(o.body))}
			if err := putJSON(txn, string(kv.Key(prefixAudit, kv.U64(e.Seq))), e); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The old way really did keep them in clear.
	if raw := auditValues(t, db); !bytes.Contains(raw, []byte(secretPW)) || !bytes.Contains(raw, []byte(secretCard)) {
		t.Fatalf("the old redaction was expected to keep secrets: %s", raw)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = kv.Open(dir, kv.Small, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc, err := OpenBadger(db, Options{AdminToken: adminToken, Cost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if raw := auditValues(t, db); bytes.Contains(raw, []byte(secretPW)) || bytes.Contains(raw, []byte(secretCard)) {
		t.Fatalf("a secret is still stored after open: %s", raw)
	}
	es, err := svc.AuditLog("", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != len(old) {
		t.Fatalf("%d entries, want %d", len(es), len(old))
	}
	for _, e := range es {
		if want := old[e.Seq-1].want; string(e.Body) != want {
			t.Errorf("entry %d (%s): %s, want %s", e.Seq, e.Path, e.Body, want)
		}
	}
	// Idempotent: a second pass finds nothing to do, and new entries go on
	// from the old numbering.
	if n, err := RedactStoredAudit(db); err != nil || n != 0 {
		t.Fatalf("second pass rewrote %d (%v), want 0", n, err)
	}
	if err := svc.Record(Entry{Who: "boss", Method: "PUT", Path: "/z", Body: redact(form, []byte(`{"doors":{}}`))}); err != nil {
		t.Fatal(err)
	}
	if n, err := RedactStoredAudit(db); err != nil || n != 0 {
		t.Fatalf("pass after a new entry rewrote %d (%v), want 0", n, err)
	}
	if es, _ := svc.AuditLog("", 0, 1); len(es) != 1 || es[0].Seq != uint64(len(old)+1) {
		t.Fatalf("new entry: %+v", es)
	}
}

// auditValues is every stored audit value, concatenated.
func auditValues(t *testing.T, db *badger.DB) []byte {
	t.Helper()
	var all []byte
	if err := scan(db, prefixAudit, func(_, v []byte) error { all = append(all, v...); return nil }); err != nil {
		t.Fatal(err)
	}
	return all
}
