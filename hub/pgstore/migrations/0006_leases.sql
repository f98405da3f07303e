-- Hub workers sharing one database: each live worker's heartbeat, and
-- each site's lease. A site's events, decisions and downlink are written
-- only by the lease's owner, and only while owner and epoch still match
-- and the lease is unexpired by the database's clock (hub/lease's Check,
-- called inside each commit). The epoch grows by one at every change of
-- hands, so a write of an earlier holder is told apart and refused.
CREATE TABLE hub_workers (
	id         text        PRIMARY KEY,
	heartbeat  timestamptz NOT NULL,
	started_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE site_leases (
	site       text        PRIMARY KEY,
	owner      text        NOT NULL,
	epoch      bigint      NOT NULL CHECK (epoch > 0),
	expires_at timestamptz NOT NULL
);
CREATE INDEX site_leases_owner ON site_leases (owner);
