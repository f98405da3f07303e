-- Operator accounts: bcrypt hash, role and the sites they cover (empty:
-- every site).
CREATE TABLE operator_accounts (
	name       text        PRIMARY KEY,
	display    text        NOT NULL DEFAULT '',
	role       text        NOT NULL,
	sites      text[]      NOT NULL DEFAULT '{}',
	disabled   boolean     NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	hash       bytea       NOT NULL
);

-- Dashboard sessions under the SHA-256 of the cookie's id (the id itself
-- is never stored). account is the admin token's name for its sessions.
CREATE TABLE operator_sessions (
	digest     text        PRIMARY KEY,
	account    text        NOT NULL,
	admin      boolean     NOT NULL DEFAULT false,
	csrf       text        NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX operator_sessions_account ON operator_sessions (account);
CREATE INDEX operator_sessions_expires ON operator_sessions (expires_at);

-- API tokens for scripts, under the SHA-256 of the secret; role and sites
-- narrow the owner's (empty: the owner's).
CREATE TABLE operator_tokens (
	digest     text        PRIMARY KEY,
	id         text        NOT NULL UNIQUE,
	name       text        NOT NULL,
	owner      text        NOT NULL,
	role       text        NOT NULL DEFAULT '',
	sites      text[]      NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL
);
CREATE INDEX operator_tokens_owner ON operator_tokens (owner);

-- Every operator write: who (actor, '' for credentials that did not check
-- out), when, what (method, path), the answer's status, and the request
-- body with secrets redacted.
CREATE TABLE audit_log (
	seq    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at     timestamptz NOT NULL,
	actor  text        NOT NULL,
	role   text        NOT NULL DEFAULT '',
	via    text        NOT NULL DEFAULT '',
	method text        NOT NULL,
	path   text        NOT NULL,
	status integer     NOT NULL,
	client text        NOT NULL DEFAULT '',
	body   json,
	note   text        NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_path ON audit_log (path, at);

-- Failed logins, by account name and by client address, for the login
-- limits every hub on the database shares; rows older than the limits'
-- window are deleted as new ones come.
CREATE TABLE login_failures (
	kind    text        NOT NULL CHECK (kind IN ('name', 'client')),
	subject text        NOT NULL,
	at      timestamptz NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures (kind, subject, at);
CREATE INDEX login_failures_at ON login_failures (at);
