package operators

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"linli/hub/api"
)

func openService(t *testing.T, st Store, now func() time.Time) *Service {
	t.Helper()
	svc, err := Open(st, Options{AdminToken: adminToken, Cost: bcrypt.MinCost, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// Accounts, sessions, API tokens and the audit log outlive the service: a
// hub restarted on the same store knows them all, and numbers its audit
// entries after the ones before.
func TestStoreOutlivesTheService(t *testing.T) {
	for _, impl := range storeImpls {
		t.Run(impl.name, func(t *testing.T) {
			c := &clock{t: time.Date(2026, 11, 1, 9, 0, 0, 123456789, time.UTC)}
			st, reopen := impl.open(t)
			svc := openService(t, st, c.now)
			created, err := svc.Create(NewAccount{Name: "op1", Display: "值班员", Password: "operator-one-pw", Role: api.RoleOperator, Sites: []string{"s2", "s1"}})
			if err != nil {
				t.Fatal(err)
			}
			sid, sess, err := svc.newSession("op1", false)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := svc.TokenPrincipal(adminToken)
			tok, secret, err := svc.CreateToken(p, NewToken{Name: "export", Role: api.RoleViewer, Sites: []string{"s1"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{"/api/v1/a", "/api/v1/b"} {
				if err := svc.Record(Entry{Who: "op1", Role: api.RoleOperator, Method: "PATCH", Path: path, Status: 200,
					Body: []byte(`{"note":"去看看","password":"[redacted]"}`)}); err != nil {
					t.Fatal(err)
				}
			}

			svc = openService(t, reopen(), c.now)
			a, err := svc.Account("op1")
			if err != nil || a.Display != "值班员" || a.Role != api.RoleOperator || len(a.Sites) != 2 || a.Sites[0] != "s1" ||
				!a.Created.Equal(created.Created) || !a.Updated.Equal(created.Updated) {
				t.Fatalf("account after reopen: %+v, %v; want %+v", a, err, created)
			}
			if _, err := svc.checkPassword("op1", "operator-one-pw"); err != nil {
				t.Fatalf("password after reopen: %v", err)
			}
			got, err := svc.session(sid)
			if err != nil || got.Name != "op1" || got.CSRF != sess.CSRF || !got.Expires.Equal(sess.Expires) {
				t.Fatalf("session after reopen: %+v, %v; want %+v", got, err, sess)
			}
			tp, err := svc.TokenPrincipal(secret)
			if err != nil || tp.Role != api.RoleViewer || len(tp.Sites) != 1 || tp.Sites[0] != "s1" {
				t.Fatalf("token after reopen: %+v, %v", tp, err)
			}
			toks, err := svc.Tokens("")
			if err != nil || len(toks) != 1 || toks[0].ID != tok.ID || toks[0].Name != "export" || !toks[0].Created.Equal(tok.Created) {
				t.Fatalf("tokens after reopen: %+v, %v; want %+v", toks, err, tok)
			}
			if err := svc.Record(Entry{Who: "boss", Method: "DELETE", Path: "/api/v1/c", Status: 204}); err != nil {
				t.Fatal(err)
			}
			log, err := svc.AuditLog("", 0, 10)
			if err != nil || len(log) != 3 {
				t.Fatalf("audit log after reopen: %+v, %v", log, err)
			}
			if log[0].Path != "/api/v1/c" || log[0].Seq <= log[1].Seq || log[1].Seq <= log[2].Seq {
				t.Fatalf("audit entries after reopen, newest first: %+v", log)
			}
			if string(log[1].Body) != `{"note":"去看看","password":"[redacted]"}` || !log[1].Time.Equal(c.now().Truncate(time.Microsecond)) {
				t.Fatalf("audit entry after reopen: body %s, time %v", log[1].Body, log[1].Time)
			}
			mine, err := svc.AuditLog("op1", log[1].Seq, 10)
			if err != nil || len(mine) != 1 || mine[0].Path != "/api/v1/a" {
				t.Fatalf("op1's entries before %d: %+v, %v", log[1].Seq, mine, err)
			}
		})
	}
}

// Of creations of one name racing in the store, exactly one succeeds;
// the others are told the name exists.
func TestCreateIsOncePerName(t *testing.T) { forEachStore(t, testCreateIsOncePerName) }

func testCreateIsOncePerName(t *testing.T, open storeOpener) {
	st := open(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	const racers, rounds = 8, 20
	for round := range rounds {
		name := fmt.Sprintf("op%d", round)
		errs := make(chan error, racers)
		var start sync.WaitGroup
		start.Add(1)
		for i := range racers {
			go func() {
				start.Wait()
				errs <- st.CreateAccount(Account{Name: name, Display: fmt.Sprint(i), Role: api.RoleViewer, Created: now, Updated: now, Hash: []byte("h")})
			}()
		}
		start.Done()
		ok := 0
		for range racers {
			switch err := <-errs; {
			case err == nil:
				ok++
			case errors.Is(err, ErrExists):
			default:
				t.Errorf("racing creation: %v", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d creations of %s succeeded, want 1", ok, name)
		}
	}
}

// On PostgreSQL the login limits are the database's: failures counted by
// one hub hold back logins at another on the same database, and at a
// restarted one; a success at either clears the name's count.
func TestLoginLimitsAreSharedOnPostgres(t *testing.T) {
	var open func(t *testing.T) (Store, func() Store)
	for _, impl := range storeImpls {
		if impl.name == "postgres" {
			open = impl.open
		}
	}
	c := &clock{t: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)}
	lim := Limits{PerName: 3, PerClient: 5, Window: 10 * time.Minute}
	st, reopen := open(t)
	a := st.LoginLimiter(lim, c.now)
	b := reopen().LoginLimiter(lim, c.now)
	for range lim.PerName {
		if err := a.Fail("op1", "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
		c.advance(time.Minute)
	}
	wait, err := b.Wait("op1", "10.0.0.2")
	if err != nil || wait != 7*time.Minute {
		t.Fatalf("another hub's wait for the name: %v, %v; want 7m0s", wait, err)
	}
	if wait, err := b.Wait("op2", "10.0.0.1"); err != nil || wait != 0 {
		t.Fatalf("another name from the client below its limit: %v, %v; want 0", wait, err)
	}
	for range lim.PerClient - lim.PerName {
		if err := b.Fail("op3", "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	if wait, err := a.Wait("op2", "10.0.0.1"); err != nil || wait != 7*time.Minute {
		t.Fatalf("client at its limit across hubs: %v, %v; want 7m0s", wait, err)
	}
	if err := a.Succeed("op1"); err != nil {
		t.Fatal(err)
	}
	if wait, err := b.Wait("op1", "10.0.0.9"); err != nil || wait != 0 {
		t.Fatalf("after a success: %v, %v; want 0", wait, err)
	}
	c.advance(lim.Window)
	if wait, err := b.Wait("op2", "10.0.0.1"); err != nil || wait != 0 {
		t.Fatalf("after the window: %v, %v; want 0", wait, err)
	}
}
