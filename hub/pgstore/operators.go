package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Errors of the operator tables.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Account is a row of operator_accounts.
type Account struct {
	Name     string
	Display  string
	Role     string
	Sites    []string
	Disabled bool
	Created  time.Time
	Updated  time.Time
	Hash     []byte
}

// Session is a row of operator_sessions (without its digest).
type Session struct {
	Name    string
	Admin   bool
	CSRF    string
	Created time.Time
	Expires time.Time
}

// APIToken is a row of operator_tokens (without its digest). LastUsed is
// not stored.
type APIToken struct {
	ID       string
	Name     string
	Owner    string
	Role     string
	Sites    []string
	Created  time.Time
	LastUsed *time.Time
}

// AuditEntry is a row of audit_log.
type AuditEntry struct {
	Seq    uint64
	Time   time.Time
	Who    string
	Role   string
	Via    string
	Method string
	Path   string
	Status int
	Client string
	Body   json.RawMessage
	Note   string
}

// OperatorStore keeps operator accounts, sessions, API tokens and the
// audit log in the tables operator_accounts, operator_sessions,
// operator_tokens and audit_log.
type OperatorStore struct{ s *Store }

// Operators is the store of the hub's operators.
func (s *Store) Operators() OperatorStore { return OperatorStore{s} }

func (o OperatorStore) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), o.s.timeout)
}

const accountCols = "name, display, role, sites, disabled, created_at, updated_at, hash"

func scanAccount(row pgx.Row) (Account, error) {
	var a Account
	err := row.Scan(&a.Name, &a.Display, &a.Role, &a.Sites, &a.Disabled, &a.Created, &a.Updated, &a.Hash)
	a.Created, a.Updated = a.Created.UTC(), a.Updated.UTC()
	return a, err
}

// CreateAccount stores a new account; ErrExists if the name is taken.
func (o OperatorStore) CreateAccount(a Account) error {
	ctx, cancel := o.ctx()
	defer cancel()
	_, err := o.s.pool.Exec(ctx, "INSERT INTO operator_accounts ("+accountCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		a.Name, a.Display, a.Role, nonNil(a.Sites), a.Disabled, a.Created, a.Updated, a.Hash)
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return ErrExists
	}
	return err
}

// UpdateAccount edits an account under a row lock and stores it;
// ErrNotFound if there is none. An error from edit is returned as it is.
func (o OperatorStore) UpdateAccount(name string, edit func(*Account) error) (Account, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	var a Account
	err := pgx.BeginFunc(ctx, o.s.pool, func(tx pgx.Tx) error {
		var err error
		a, err = scanAccount(tx.QueryRow(ctx, "SELECT "+accountCols+" FROM operator_accounts WHERE name = $1 FOR UPDATE", name))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := edit(&a); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE operator_accounts SET display = $2, role = $3, sites = $4, disabled = $5,
			created_at = $6, updated_at = $7, hash = $8 WHERE name = $1`,
			name, a.Display, a.Role, nonNil(a.Sites), a.Disabled, a.Created, a.Updated, a.Hash)
		return err
	})
	return a, err
}

// DeleteAccount removes an account; ErrNotFound if there is none.
func (o OperatorStore) DeleteAccount(name string) error {
	ctx, cancel := o.ctx()
	defer cancel()
	tag, err := o.s.pool.Exec(ctx, "DELETE FROM operator_accounts WHERE name = $1", name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Account returns one account; ErrNotFound if there is none.
func (o OperatorStore) Account(name string) (Account, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	a, err := scanAccount(o.s.pool.QueryRow(ctx, "SELECT "+accountCols+" FROM operator_accounts WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, ErrNotFound
	}
	return a, err
}

// Accounts lists every account by name.
func (o OperatorStore) Accounts() ([]Account, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	rows, err := o.s.pool.Query(ctx, "SELECT "+accountCols+" FROM operator_accounts ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// PutSession stores a session, deleting those that have expired by the
// time this one was created.
func (o OperatorStore) PutSession(digest string, sess Session) error {
	ctx, cancel := o.ctx()
	defer cancel()
	return pgx.BeginFunc(ctx, o.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM operator_sessions WHERE expires_at <= $1", sess.Created); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO operator_sessions (digest, account, admin, csrf, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, digest, sess.Name, sess.Admin, sess.CSRF, sess.Created, sess.Expires)
		return err
	})
}

// Session returns a stored session; ErrNotFound if there is none.
func (o OperatorStore) Session(digest string) (Session, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	var sess Session
	err := o.s.pool.QueryRow(ctx, "SELECT account, admin, csrf, created_at, expires_at FROM operator_sessions WHERE digest = $1",
		digest).Scan(&sess.Name, &sess.Admin, &sess.CSRF, &sess.Created, &sess.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	sess.Created, sess.Expires = sess.Created.UTC(), sess.Expires.UTC()
	return sess, err
}

// DeleteSession ends one session.
func (o OperatorStore) DeleteSession(digest string) error {
	ctx, cancel := o.ctx()
	defer cancel()
	_, err := o.s.pool.Exec(ctx, "DELETE FROM operator_sessions WHERE digest = $1", digest)
	return err
}

// DeleteSessions ends every session of an account (not the admin token's).
func (o OperatorStore) DeleteSessions(name string) error {
	ctx, cancel := o.ctx()
	defer cancel()
	_, err := o.s.pool.Exec(ctx, "DELETE FROM operator_sessions WHERE account = $1 AND NOT admin", name)
	return err
}

// PutToken stores an API token.
func (o OperatorStore) PutToken(digest string, t APIToken) error {
	ctx, cancel := o.ctx()
	defer cancel()
	_, err := o.s.pool.Exec(ctx, `INSERT INTO operator_tokens (digest, id, name, owner, role, sites, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, digest, t.ID, t.Name, t.Owner, t.Role, nonNil(t.Sites), t.Created)
	return err
}

const tokenCols = "id, name, owner, role, sites, created_at"

func scanToken(row pgx.Row) (APIToken, error) {
	var t APIToken
	err := row.Scan(&t.ID, &t.Name, &t.Owner, &t.Role, &t.Sites, &t.Created)
	if len(t.Sites) == 0 {
		t.Sites = nil // no narrowing, as the token was given
	}
	t.Created = t.Created.UTC()
	return t, err
}

// Token returns a stored token; ErrNotFound if there is none.
func (o OperatorStore) Token(digest string) (APIToken, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	t, err := scanToken(o.s.pool.QueryRow(ctx, "SELECT "+tokenCols+" FROM operator_tokens WHERE digest = $1", digest))
	if errors.Is(err, pgx.ErrNoRows) {
		return APIToken{}, ErrNotFound
	}
	return t, err
}

// Tokens lists every token by creation.
func (o OperatorStore) Tokens() ([]APIToken, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	rows, err := o.s.pool.Query(ctx, "SELECT "+tokenCols+" FROM operator_tokens ORDER BY created_at, id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []APIToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteTokens deletes the tokens of owner ("" for anyone's) with id (""
// for every id) and reports how many it deleted.
func (o OperatorStore) DeleteTokens(owner, id string) (int, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	tag, err := o.s.pool.Exec(ctx, "DELETE FROM operator_tokens WHERE ($1 = '' OR owner = $1) AND ($2 = '' OR id = $2)", owner, id)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// AppendAudit stores e numbered by the table's identity and returns it.
func (o OperatorStore) AppendAudit(e AuditEntry) (AuditEntry, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	var body []byte
	if len(e.Body) > 0 {
		body = e.Body
	}
	var seq int64
	err := o.s.pool.QueryRow(ctx, `INSERT INTO audit_log (at, actor, role, via, method, path, status, client, body, note)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::json, $10) RETURNING seq`,
		e.Time, e.Who, e.Role, e.Via, e.Method, e.Path, e.Status, e.Client, body, e.Note).Scan(&seq)
	if err != nil {
		return AuditEntry{}, err
	}
	e.Seq = uint64(seq)
	return e, nil
}

// AuditLog returns up to limit entries numbered below before (0: the
// newest), newest first, of who ("" for everyone).
func (o OperatorStore) AuditLog(who string, before uint64, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	upper := int64(-1) // no bound
	if before > 0 {
		upper = int64(min(before, 1<<63-1))
	}
	ctx, cancel := o.ctx()
	defer cancel()
	rows, err := o.s.pool.Query(ctx, `SELECT seq, at, actor, role, via, method, path, status, client, body::text, note
		FROM audit_log WHERE ($1 < 0 OR seq < $1) AND ($2 = '' OR actor = $2) ORDER BY seq DESC LIMIT $3`,
		upper, who, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var seq int64
		var body *string
		if err := rows.Scan(&seq, &e.Time, &e.Who, &e.Role, &e.Via, &e.Method, &e.Path, &e.Status, &e.Client, &body, &e.Note); err != nil {
			return nil, err
		}
		e.Seq, e.Time = uint64(seq), e.Time.UTC()
		if body != nil {
			e.Body = json.RawMessage(*body)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// AddLoginFailure records a failed login for name from client at at, and
// deletes the failures before forget.
func (o OperatorStore) AddLoginFailure(name, client string, at, forget time.Time) error {
	ctx, cancel := o.ctx()
	defer cancel()
	return pgx.BeginFunc(ctx, o.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM login_failures WHERE at < $1", forget); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO login_failures (kind, subject, at) VALUES ('name', $1, $3), ('client', $2, $3)",
			name, client, at)
		return err
	})
}

// LoginFailures returns the times of the failed logins of a name (kind
// "name") or client address (kind "client") after since, oldest first.
func (o OperatorStore) LoginFailures(kind, subject string, since time.Time) ([]time.Time, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	rows, err := o.s.pool.Query(ctx, "SELECT at FROM login_failures WHERE kind = $1 AND subject = $2 AND at > $3 ORDER BY at",
		kind, subject, since)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (time.Time, error) {
		var t time.Time
		err := row.Scan(&t)
		return t.UTC(), err
	})
}

// ClearLoginFailures forgets the failed logins of a name.
func (o OperatorStore) ClearLoginFailures(name string) error {
	ctx, cancel := o.ctx()
	defer cancel()
	_, err := o.s.pool.Exec(ctx, "DELETE FROM login_failures WHERE kind = 'name' AND subject = $1", name)
	return err
}

// nonNil is s, or an empty list for nil (the columns are NOT NULL).
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
