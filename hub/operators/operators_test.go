package operators

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"linli/hub/api"
	"linli/hub/pgstore"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/test/testkit"
)

const adminToken = "0123456789abcdef0123456789abcdef0123456789abcdef"

// file adds a report filed at a kiosk of site as the kiosk's seq-th event
// and returns its id.
func file(t *testing.T, st *testkit.MemState, seq uint64, device, site, building string) string {
	t.Helper()
	ev, err := event.NewEvent(device, seq, hlc.New(1_740_000_000_000+int64(seq), 0),
		&event.Report{Category: "facilities", Title: "路灯坏了", Building: building, Resident: "R1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(site, ev); err != nil {
		t.Fatal(err)
	}
	return ev.ID()
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	svc   *Service
	srv   *httptest.Server
	state *testkit.MemState
	clock *clock
	r1    string // a report of site s1
	r2    string // a report of site s2
}

// storeOpener opens a new, empty Store of one implementation.
type storeOpener func(t *testing.T) Store

// storeImpls are the implementations of Store every fixture test runs on.
// open returns a new, empty store and a function that opens another on
// the same data, as a restarted hub would.
var storeImpls = []struct {
	name string
	open func(t *testing.T) (Store, func() Store)
}{
	{"badger", func(t *testing.T) (Store, func() Store) {
		db, err := kv.Open(t.TempDir(), kv.Small, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := db.Close(); err != nil {
				t.Error(err)
			}
		})
		open := func() Store {
			st, _, err := NewBadgerStore(db)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		return open(), open
	}},
	{"postgres", func(t *testing.T) (Store, func() Store) {
		url := testkit.StartPostgres(t)
		open := func() Store {
			st, err := pgstore.Open(context.Background(), url, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return PostgresStore{st.Operators()}
		}
		return open(), open
	}},
}

// forEachStore runs f on every implementation of Store.
func forEachStore(t *testing.T, f func(t *testing.T, st storeOpener)) {
	for _, impl := range storeImpls {
		t.Run(impl.name, func(t *testing.T) {
			f(t, func(t *testing.T) Store { st, _ := impl.open(t); return st })
		})
	}
}

func newFixture(t *testing.T, open storeOpener, opts ...func(*Options)) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)}
	o := Options{AdminToken: adminToken, Cost: bcrypt.MinCost, Now: c.now}
	for _, f := range opts {
		f(&o)
	}
	svc, err := Open(open(t), o)
	if err != nil {
		t.Fatal(err)
	}
	st := testkit.NewMemState()
	f := &fixture{svc: svc, state: st, clock: c}
	f.r1 = file(t, st, 1, "k1", "s1", "B1")
	f.r2 = file(t, st, 2, "k2", "s2", "B9")
	a := &api.API{Auth: svc, State: st, Devices: noDevices{}, Extra: svc.Mount}
	f.srv = httptest.NewServer(svc.Audit(a.Handler()))
	t.Cleanup(f.srv.Close)
	for _, n := range []NewAccount{
		{Name: "op1", Password: "operator-one-pw", Role: api.RoleOperator, Sites: []string{"s1"}},
		{Name: "view1", Password: "viewer-one-pw", Role: api.RoleViewer, Sites: []string{"s1"}},
		{Name: "boss", Password: "the-boss-pw-1", Role: api.RoleAdmin},
	} {
		if _, err := svc.Create(n); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

type noDevices struct{}

func (noDevices) Devices() []store.DeviceRecord { return nil }
func (noDevices) Device(string) (store.DeviceRecord, bool) {
	return store.DeviceRecord{}, false
}

// client is a browser-like caller: a cookie jar, the CSRF token it was
// given, or a bearer token.
type client struct {
	t      *testing.T
	f      *fixture
	cookie *http.Cookie
	csrf   string
	bearer string
	header map[string]string
}

func (f *fixture) anon(t *testing.T) *client { return &client{t: t, f: f} }

func (f *fixture) login(t *testing.T, name, password string) *client {
	t.Helper()
	c := f.anon(t)
	body := map[string]string{"name": name, "password": password}
	if name == AdminName {
		body = map[string]string{"token": password}
	}
	code, out, resp := c.do("POST", "/api/v1/login", body)
	if code != 200 {
		t.Fatalf("login %s: %d %s", name, code, out)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == CookieName {
			c.cookie = ck
		}
	}
	var s sessionOut
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatal(err)
	}
	c.csrf = s.CSRF
	return c
}

func (c *client) do(method, path string, body any) (int, []byte, *http.Response) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.f.srv.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.cookie != nil {
		req.AddCookie(&http.Cookie{Name: c.cookie.Name, Value: c.cookie.Value})
		if c.csrf != "" {
			req.Header.Set(CSRFHeader, c.csrf)
		}
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, out, resp
}

func (c *client) code(method, path string, body any) int {
	c.t.Helper()
	code, _, _ := c.do(method, path, body)
	return code
}

func TestSessionCookieIsHttpOnlyStrictAndSecureOverTLS(t *testing.T) {
	forEachStore(t, testSessionCookieIsHttpOnlyStrictAndSecureOverTLS)
}

func testSessionCookieIsHttpOnlyStrictAndSecureOverTLS(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	for _, tc := range []struct {
		name       string
		tls        bool
		wantSecure bool
	}{{"plain loopback", false, false}, {"TLS", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/api/v1/login", strings.NewReader(`{"name":"op1","password":"operator-one-pw"}`))
			if tc.tls {
				req.TLS = &tls.ConnectionState{}
			}
			rec := httptest.NewRecorder()
			mux := http.NewServeMux()
			f.svc.Mount(mux)
			mux.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Fatalf("login: %d %s", rec.Code, rec.Body)
			}
			cs := rec.Result().Cookies()
			if len(cs) != 1 {
				t.Fatalf("cookies %v, want one", cs)
			}
			c := cs[0]
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != tc.wantSecure || c.Path != "/" {
				t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Secure=%v, Path=/", c, tc.wantSecure)
			}
			if len(c.Value) < 64 {
				t.Fatalf("session id %q is short", c.Value)
			}
		})
	}
}

func TestFirstLoginWithAdminTokenThenAccounts(t *testing.T) {
	forEachStore(t, testFirstLoginWithAdminTokenThenAccounts)
}

func testFirstLoginWithAdminTokenThenAccounts(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	if code := f.anon(t).code("POST", "/api/v1/login", map[string]string{"token": "nope"}); code != 401 {
		t.Fatalf("login with a wrong admin token: %d, want 401", code)
	}
	admin := f.login(t, AdminName, adminToken)
	code, out, _ := admin.do("GET", "/api/v1/session", nil)
	if code != 200 || !strings.Contains(string(out), `"role":"admin"`) {
		t.Fatalf("session: %d %s", code, out)
	}
	if code := admin.code("POST", "/api/v1/operators", NewAccount{Name: "op2", Password: "op-two-password", Role: api.RoleOperator, Sites: []string{"s2"}}); code != 201 {
		t.Fatalf("admin creates an operator: %d", code)
	}
	if code := admin.code("POST", "/api/v1/operators", NewAccount{Name: "op2", Password: "op-two-password", Role: api.RoleOperator}); code != 409 {
		t.Fatalf("same name again: %d, want 409", code)
	}
	for _, bad := range []NewAccount{
		{Name: "x", Password: "short", Role: api.RoleOperator},
		{Name: "admin", Password: "long-enough-pw", Role: api.RoleOperator},
		{Name: "y", Password: "long-enough-pw", Role: "god"},
		{Name: "z", Password: "long-enough-pw", Role: api.RoleAdmin, Sites: []string{"s1"}},
	} {
		if code := admin.code("POST", "/api/v1/operators", bad); code != 400 {
			t.Errorf("create %+v: %d, want 400", bad, code)
		}
	}
	op2 := f.login(t, "op2", "op-two-password")
	if code, out, _ := op2.do("GET", "/api/v1/reports", nil); code != 200 || strings.Contains(string(out), f.r1) || !strings.Contains(string(out), f.r2) {
		t.Fatalf("op2 lists reports: %d %s (want only s2's %s)", code, out, f.r2)
	}
	// Disabling ends the sessions at once.
	disabled := true
	if code := admin.code("PATCH", "/api/v1/operators/op2", Change{Disabled: &disabled}); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	if code := op2.code("GET", "/api/v1/session", nil); code != 401 {
		t.Fatalf("session of a disabled operator: %d, want 401", code)
	}
	if code := f.anon(t).code("POST", "/api/v1/login", map[string]string{"name": "op2", "password": "op-two-password"}); code != 401 {
		t.Fatalf("disabled login: %d, want 401", code)
	}
}

func TestCSRFGuardsCookieWrites(t *testing.T) { forEachStore(t, testCSRFGuardsCookieWrites) }

func testCSRFGuardsCookieWrites(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	op := f.login(t, "op1", "operator-one-pw")
	patch := map[string]string{"status": "accepted"}
	csrf := op.csrf
	op.csrf = ""
	if code := op.code("PATCH", "/api/v1/reports/"+f.r1, patch); code != 403 {
		t.Fatalf("cookie write without the CSRF header: %d, want 403", code)
	}
	wrong := "0"
	if csrf[0] == '0' {
		wrong = "1"
	}
	op.csrf = wrong + csrf[1:]
	if code := op.code("PATCH", "/api/v1/reports/"+f.r1, patch); code != 403 {
		t.Fatalf("cookie write with a wrong CSRF token: %d, want 403", code)
	}
	op.csrf = csrf
	op.header = map[string]string{"Sec-Fetch-Site": "cross-site"}
	if code := op.code("PATCH", "/api/v1/reports/"+f.r1, patch); code != 403 {
		t.Fatalf("cross-site cookie write with the token: %d, want 403", code)
	}
	op.header = map[string]string{"Sec-Fetch-Site": "same-origin"}
	if code := op.code("PATCH", "/api/v1/reports/"+f.r1, patch); code != 200 {
		t.Fatalf("same-origin cookie write with the token: %d, want 200", code)
	}
	// Reads need no token.
	op.csrf = ""
	if code := op.code("GET", "/api/v1/reports/"+f.r1, nil); code != 200 {
		t.Fatalf("cookie read: %d", code)
	}
}

func TestLoginRateLimits(t *testing.T) { forEachStore(t, testLoginRateLimits) }

func testLoginRateLimits(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	c := f.anon(t)
	for i := range DefaultLimits.PerName {
		if code := c.code("POST", "/api/v1/login", map[string]string{"name": "op1", "password": "wrong-password"}); code != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, code)
		}
	}
	code, _, resp := c.do("POST", "/api/v1/login", map[string]string{"name": "op1", "password": "operator-one-pw"})
	if code != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the right password after %d failures: %d (Retry-After %q), want 429 with Retry-After", DefaultLimits.PerName, code, resp.Header.Get("Retry-After"))
	}
	// Another account from the same address is not locked by op1's count.
	f.login(t, "view1", "viewer-one-pw")
	f.clock.advance(DefaultLimits.Window)
	f.login(t, "op1", "operator-one-pw")

	// One address guessing many names hits the per-client limit.
	for i := range DefaultLimits.PerClient {
		c.code("POST", "/api/v1/login", map[string]string{"name": "guess" + string(rune('a'+i)), "password": "wrong-password"})
	}
	if code := c.code("POST", "/api/v1/login", map[string]string{"name": "boss", "password": "the-boss-pw-1"}); code != 429 {
		t.Fatalf("after %d failures from one address: %d, want 429", DefaultLimits.PerClient, code)
	}
	// Wrong admin tokens count too.
	f.clock.advance(DefaultLimits.Window)
	for range DefaultLimits.PerName {
		c.code("POST", "/api/v1/login", map[string]string{"token": "guess"})
	}
	if code := c.code("POST", "/api/v1/login", map[string]string{"token": adminToken}); code != 429 {
		t.Fatalf("admin token after failures: %d, want 429", code)
	}
}

func TestRoles(t *testing.T) { forEachStore(t, testRoles) }

func testRoles(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	viewer := f.login(t, "view1", "viewer-one-pw")
	op := f.login(t, "op1", "operator-one-pw")
	boss := f.login(t, "boss", "the-boss-pw-1")
	notice := map[string]string{"site": "s1", "title": "停水通知", "body": "周六停水"}
	for _, tc := range []struct {
		who          *client
		method, path string
		body         any
		want         int
	}{
		{viewer, "GET", "/api/v1/reports/" + f.r1, nil, 200},
		{viewer, "GET", "/api/v1/activities", nil, 200},
		{viewer, "PATCH", "/api/v1/reports/" + f.r1, map[string]string{"status": "accepted"}, 403},
		{viewer, "POST", "/api/v1/notices", notice, 403},
		{viewer, "POST", "/api/v1/operators", NewAccount{Name: "v2", Password: "long-enough-pw", Role: api.RoleViewer}, 403},
		{op, "POST", "/api/v1/notices", notice, 201},
		{op, "PATCH", "/api/v1/reports/" + f.r1, map[string]string{"status": "accepted", "note": "已派人"}, 200},
		{op, "GET", "/api/v1/operators", nil, 403},
		{op, "GET", "/api/v1/audit", nil, 403},
		{boss, "GET", "/api/v1/operators", nil, 200},
		{boss, "PATCH", "/api/v1/reports/" + f.r2, map[string]string{"status": "accepted"}, 200},
	} {
		if code, out, _ := tc.who.do(tc.method, tc.path, tc.body); code != tc.want {
			t.Errorf("%s %s by %s: %d %s, want %d", tc.method, tc.path, tc.who.cookieName(), code, out, tc.want)
		}
	}
	// The patch records the operator by name.
	var rep struct {
		History []struct{ Who string } `json:"history"`
	}
	_, out, _ := op.do("GET", "/api/v1/reports/"+f.r1, nil)
	if err := json.Unmarshal(out, &rep); err != nil || len(rep.History) < 2 || rep.History[len(rep.History)-1].Who != "op1" {
		t.Fatalf("history %s: want the last change by op1", out)
	}
}

func (c *client) cookieName() string {
	if c.bearer != "" {
		return "bearer"
	}
	return "session"
}

func TestSiteScope(t *testing.T) { forEachStore(t, testSiteScope) }

func testSiteScope(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	op := f.login(t, "op1", "operator-one-pw")
	for _, tc := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "/api/v1/reports?site=s2", nil, 403},
		// An id of another site is answered as a missing one.
		{"GET", "/api/v1/reports/" + f.r2, nil, 404},
		{"PATCH", "/api/v1/reports/" + f.r2, map[string]string{"status": "accepted"}, 404},
		{"POST", "/api/v1/notices", map[string]string{"site": "s2", "title": "t"}, 403},
		{"POST", "/api/v1/activities", map[string]any{"id": "A2", "title": "t", "site": "s2", "capacity": 3}, 403},
		{"GET", "/api/v1/notices?site=s2", nil, 403},
		{"GET", "/api/v1/alarms?site=s2", nil, 403},
		{"GET", "/api/v1/reports/" + f.r1, nil, 200},
		{"POST", "/api/v1/activities", map[string]any{"id": "A1", "title": "t", "site": "s1", "capacity": 3}, 201},
	} {
		if code, out, _ := op.do(tc.method, tc.path, tc.body); code != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, out, tc.want)
		}
	}
	_, out, _ := op.do("GET", "/api/v1/reports", nil)
	if strings.Contains(string(out), f.r2) || !strings.Contains(string(out), f.r1) {
		t.Fatalf("unfiltered list for an s1 operator: %s", out)
	}
}

func TestAPITokens(t *testing.T) { forEachStore(t, testAPITokens) }

func testAPITokens(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	op := f.login(t, "op1", "operator-one-pw")
	code, out, _ := op.do("POST", "/api/v1/tokens", NewToken{Name: "nightly export"})
	if code != 201 {
		t.Fatalf("create token: %d %s", code, out)
	}
	var tok struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || !strings.HasPrefix(tok.Token, tokenPrefix) {
		t.Fatalf("token answer %s", out)
	}
	script := &client{t: t, f: f, bearer: tok.Token}
	if code := script.code("PATCH", "/api/v1/reports/"+f.r1, map[string]string{"note": "脚本备注"}); code != 200 {
		t.Fatalf("script write with the token: %d", code)
	}
	if code := script.code("GET", "/api/v1/reports/"+f.r2, nil); code != 404 {
		t.Fatalf("token reads another site: %d, want 404 (the owner's scope)", code)
	}
	if code := script.code("POST", "/api/v1/tokens", NewToken{Name: "more"}); code != 403 {
		t.Fatalf("a token minting tokens: %d, want 403", code)
	}
	// A read-only token of an operator.
	_, out, _ = op.do("POST", "/api/v1/tokens", NewToken{Name: "dash", Role: api.RoleViewer})
	var ro struct{ Token string }
	if err := json.Unmarshal(out, &ro); err != nil {
		t.Fatal(err)
	}
	if code := (&client{t: t, f: f, bearer: ro.Token}).code("PATCH", "/api/v1/reports/"+f.r1, map[string]string{"note": "x"}); code != 403 {
		t.Fatalf("viewer token write: %d, want 403", code)
	}
	if code := op.code("POST", "/api/v1/tokens", NewToken{Name: "up", Role: api.RoleAdmin}); code != 400 {
		t.Fatalf("token above its owner: %d, want 400", code)
	}
	if code := op.code("POST", "/api/v1/tokens", NewToken{Name: "s2", Sites: []string{"s2"}}); code != 400 {
		t.Fatalf("token outside its owner's sites: %d, want 400", code)
	}
	if code := op.code("DELETE", "/api/v1/tokens/"+tok.ID, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	if code := script.code("PATCH", "/api/v1/reports/"+f.r1, map[string]string{"note": "again"}); code != 401 {
		t.Fatalf("revoked token: %d, want 401", code)
	}
	// The admin token keeps working for every write (docs/interface.md), and a
	// wrong bearer is 401.
	if code := (&client{t: t, f: f, bearer: adminToken}).code("PATCH", "/api/v1/reports/"+f.r2, map[string]string{"note": "admin"}); code != 200 {
		t.Fatalf("admin token write: %d", code)
	}
	if code := (&client{t: t, f: f, bearer: "lnk_nope_nope"}).code("PATCH", "/api/v1/reports/"+f.r2, map[string]string{"note": "x"}); code != 401 {
		t.Fatalf("unknown token: %d, want 401", code)
	}
}

func TestAuditLogRecordsEveryWrite(t *testing.T) { forEachStore(t, testAuditLogRecordsEveryWrite) }

func testAuditLogRecordsEveryWrite(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	op := f.login(t, "op1", "operator-one-pw")
	viewer := f.login(t, "view1", "viewer-one-pw")
	boss := f.login(t, "boss", "the-boss-pw-1")
	op.code("PATCH", "/api/v1/reports/"+f.r1, map[string]string{"status": "accepted", "note": "去看看"})
	viewer.code("PATCH", "/api/v1/reports/"+f.r1, map[string]string{"status": "resolved"})
	boss.code("POST", "/api/v1/operators", NewAccount{Name: "op3", Password: "secret-password-3", Role: api.RoleOperator})
	f.anon(t).code("POST", "/api/v1/login", map[string]string{"name": "op1", "password": "wrong-password"})

	code, out, _ := boss.do("GET", "/api/v1/audit", nil)
	if code != 200 {
		t.Fatalf("audit: %d", code)
	}
	var es []Entry
	if err := json.Unmarshal(out, &es); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "secret-password-3") || strings.Contains(string(out), "operator-one-pw") {
		t.Fatalf("a password reached the audit log: %s", out)
	}
	find := func(who, method, path string, status int) *Entry {
		for i := range es {
			e := &es[i]
			if e.Who == who && e.Method == method && e.Path == path && e.Status == status {
				return e
			}
		}
		return nil
	}
	e := find("op1", "PATCH", "/api/v1/reports/"+f.r1, 200)
	if e == nil || e.Via != api.ViaSession || e.Time.IsZero() || !strings.Contains(string(e.Body), "去看看") {
		t.Fatalf("op1's patch in %s", out)
	}
	if find("view1", "PATCH", "/api/v1/reports/"+f.r1, 403) == nil {
		t.Errorf("the viewer's refused write is not logged: %s", out)
	}
	if e := find("boss", "POST", "/api/v1/operators", 201); e == nil || !strings.Contains(string(e.Body), "[redacted]") {
		t.Errorf("account creation with a redacted password is not logged: %s", out)
	}
	if find("op1", "POST", "/api/v1/login", 401) == nil || find("op1", "POST", "/api/v1/login", 200) == nil {
		t.Errorf("logins are not logged: %s", out)
	}
	for i := 1; i < len(es); i++ {
		if es[i].Seq >= es[i-1].Seq {
			t.Fatalf("entries not newest first: %d then %d", es[i-1].Seq, es[i].Seq)
		}
	}
	// Filtered by who, and paged.
	_, out, _ = boss.do("GET", "/api/v1/audit?who=op1&limit=1", nil)
	var one []Entry
	if err := json.Unmarshal(out, &one); err != nil || len(one) != 1 || one[0].Who != "op1" {
		t.Fatalf("audit?who=op1&limit=1: %s", out)
	}
}

// A dashboard write passes the audit log, the role check, the handler's
// caller and its site check; the credentials behind them are looked up
// once, and every layer still sees the same caller.
func TestOneAuthenticationPerRequest(t *testing.T) { forEachStore(t, testOneAuthenticationPerRequest) }

func testOneAuthenticationPerRequest(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	op := f.login(t, "op1", "operator-one-pw")
	script := &client{t: t, f: f, bearer: adminToken}
	for _, c := range []struct {
		name   string
		c      *client
		method string
		path   string
		body   any
		status int
	}{
		{"session patch", op, "PATCH", "/api/v1/reports/" + f.r1, map[string]string{"status": "accepted", "note": "去看看"}, 200},
		{"session read", op, "GET", "/api/v1/reports/" + f.r1, nil, 200},
		{"session refused write", op, "PATCH", "/api/v1/reports/" + f.r2, map[string]string{"note": "x"}, 404},
		{"token patch", script, "PATCH", "/api/v1/reports/" + f.r2, map[string]string{"note": "admin"}, 200},
		{"account admin", script, "GET", "/api/v1/operators", nil, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := f.svc.authentications.Load()
			if code, out, _ := c.c.do(c.method, c.path, c.body); code != c.status {
				t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, code, out, c.status)
			}
			if n := f.svc.authentications.Load() - before; n != 1 {
				t.Fatalf("%s %s authenticated %d times, want once", c.method, c.path, n)
			}
		})
	}
	// The audit log still names the caller of the write.
	es, err := f.svc.AuditLog("op1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) == 0 || es[0].Method != "PATCH" || es[0].Via != api.ViaSession || es[0].Role != api.RoleOperator {
		t.Fatalf("audit of op1: %+v", es)
	}
}
