-- The device registry: each enrolled device id with its current key and
-- broker credentials (hashes only), whether and when it was revoked.
CREATE TABLE enrolled_devices (
	id          text        PRIMARY KEY,
	site        text        NOT NULL,
	role        text        NOT NULL,
	state       text        NOT NULL GENERATED ALWAYS AS
	            (CASE WHEN revoked_at IS NULL THEN 'active' ELSE 'revoked' END) STORED,
	enrolled_at timestamptz,
	revoked_at  timestamptz,
	public_key  bytea       NOT NULL,
	pass_salt   bytea,
	pass_hash   bytea,
	mosquitto   text,       -- the broker password in mosquitto_passwd's $7$ form
	seq_base    bigint      NOT NULL DEFAULT 0 -- the current key signs seqs above it
);
CREATE INDEX enrolled_devices_site ON enrolled_devices (site, id);

-- The keys of the devices an id's current one replaced, oldest first (n
-- from 0): each still signs the seqs it numbered, seq_from < seq <=
-- seq_below, until the id is revoked.
CREATE TABLE enrolled_device_past_keys (
	device      text        NOT NULL REFERENCES enrolled_devices (id) ON DELETE CASCADE,
	n           integer     NOT NULL CHECK (n >= 0),
	public_key  bytea       NOT NULL,
	pass_salt   bytea,
	pass_hash   bytea,
	mosquitto   text,
	seq_from    bigint      NOT NULL,
	seq_below   bigint      NOT NULL,
	replaced_at timestamptz NOT NULL,
	revoked     boolean     NOT NULL DEFAULT false,
	PRIMARY KEY (device, n)
);

-- One-time enrollment tokens not used yet, under the SHA-256 of their
-- secret (the secret itself is never stored).
CREATE TABLE enrollment_tokens (
	digest      text        PRIMARY KEY,
	device      text        NOT NULL,
	site        text        NOT NULL,
	role        text        NOT NULL,
	replace     boolean     NOT NULL DEFAULT false,
	expires_at  timestamptz NOT NULL,
	issued_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enrollment_tokens_expires ON enrollment_tokens (expires_at);

-- Each site's key for resident pseudonyms, made at its first use.
CREATE TABLE resident_keys (
	site       text        PRIMARY KEY,
	key        bytea       NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
