-- The hub's own keyed records, under the same keys the embedded store
-- uses: the merged state's facts, snapshot and erasures, the hub's event
-- counter, each site's downlink log, the restore and resync marks and the
-- last expiry pass. version orders writes: every write takes the next
-- value of hub_kv_version at its commit, so a snapshot of the merged
-- state taken at one value folds exactly the facts written after it.
CREATE SEQUENCE hub_kv_version;

CREATE TABLE hub_kv (
	key     bytea  PRIMARY KEY,
	value   bytea  NOT NULL,
	version bigint NOT NULL
);
