package operators

import (
	"errors"
	"time"

	"linli/hub/pgstore"
)

// PostgresStore is the hub's PostgreSQL store as the operators' Store:
// accounts, sessions, API tokens and the audit log in tables
// (operator_accounts, operator_sessions, operator_tokens, audit_log).
type PostgresStore struct{ pgstore.OperatorStore }

var _ Store = PostgresStore{}

// pgErr is err in the operators' terms.
func pgErr(err error, notFound error) error {
	switch {
	case errors.Is(err, pgstore.ErrNotFound):
		return notFound
	case errors.Is(err, pgstore.ErrExists):
		return ErrExists
	}
	return err
}

// CreateAccount implements Store.
func (s PostgresStore) CreateAccount(a Account) error {
	return pgErr(s.OperatorStore.CreateAccount(pgstore.Account(a)), ErrUnknown)
}

// UpdateAccount implements Store.
func (s PostgresStore) UpdateAccount(name string, edit func(*Account) error) (Account, error) {
	a, err := s.OperatorStore.UpdateAccount(name, func(pa *pgstore.Account) error {
		a := Account(*pa)
		err := edit(&a)
		*pa = pgstore.Account(a)
		return err
	})
	return Account(a), pgErr(err, ErrUnknown)
}

// DeleteAccount implements Store.
func (s PostgresStore) DeleteAccount(name string) error {
	return pgErr(s.OperatorStore.DeleteAccount(name), ErrUnknown)
}

// Account implements Store.
func (s PostgresStore) Account(name string) (Account, error) {
	a, err := s.OperatorStore.Account(name)
	return Account(a), pgErr(err, ErrUnknown)
}

// Accounts implements Store.
func (s PostgresStore) Accounts() ([]Account, error) {
	as, err := s.OperatorStore.Accounts()
	out := make([]Account, len(as))
	for i, a := range as {
		out[i] = Account(a)
	}
	return out, err
}

// PutSession implements Store; the row's expires_at is its lifetime.
func (s PostgresStore) PutSession(digest string, sess Session, _ time.Duration) error {
	return s.OperatorStore.PutSession(digest, pgstore.Session(sess))
}

// Session implements Store.
func (s PostgresStore) Session(digest string) (Session, error) {
	sess, err := s.OperatorStore.Session(digest)
	return Session(sess), pgErr(err, errNotFound)
}

// PutToken implements Store.
func (s PostgresStore) PutToken(digest string, t Token) error {
	return s.OperatorStore.PutToken(digest, pgstore.APIToken(t))
}

// Token implements Store.
func (s PostgresStore) Token(digest string) (Token, error) {
	t, err := s.OperatorStore.Token(digest)
	return Token(t), pgErr(err, errNotFound)
}

// Tokens implements Store.
func (s PostgresStore) Tokens() ([]Token, error) {
	ts, err := s.OperatorStore.Tokens()
	out := make([]Token, len(ts))
	for i, t := range ts {
		out[i] = Token(t)
	}
	return out, err
}

// AppendAudit implements Store.
func (s PostgresStore) AppendAudit(e Entry) (Entry, error) {
	out, err := s.OperatorStore.AppendAudit(pgstore.AuditEntry(e))
	return Entry(out), err
}

// AuditLog implements Store.
func (s PostgresStore) AuditLog(who string, before uint64, limit int) ([]Entry, error) {
	es, err := s.OperatorStore.AuditLog(who, before, limit)
	out := make([]Entry, len(es))
	for i, e := range es {
		out[i] = Entry(e)
	}
	return out, err
}

// LoginLimiter implements Store: failures are rows of login_failures, so
// every hub on the database counts them together and a restart forgets
// none.
func (s PostgresStore) LoginLimiter(l Limits, now func() time.Time) LoginLimiter {
	return pgLimiter{st: s.OperatorStore, lim: l, now: now}
}

type pgLimiter struct {
	st  pgstore.OperatorStore
	lim Limits
	now func() time.Time
}

// Wait implements LoginLimiter.
func (l pgLimiter) Wait(name, client string) (time.Duration, error) {
	now := l.now()
	since := now.Add(-l.lim.Window)
	byName, err := l.st.LoginFailures("name", name, since)
	if err != nil {
		return 0, err
	}
	byClient, err := l.st.LoginFailures("client", client, since)
	if err != nil {
		return 0, err
	}
	return max(waitFor(byName, l.lim.PerName, l.lim.Window, now), waitFor(byClient, l.lim.PerClient, l.lim.Window, now)), nil
}

// Fail implements LoginLimiter.
func (l pgLimiter) Fail(name, client string) error {
	now := l.now()
	return l.st.AddLoginFailure(name, client, now, now.Add(-l.lim.Window))
}

// Succeed implements LoginLimiter.
func (l pgLimiter) Succeed(name string) error { return l.st.ClearLoginFailures(name) }
