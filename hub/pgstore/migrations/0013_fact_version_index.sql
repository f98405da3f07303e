-- Only the merged state's facts (keys under f/) are read by the version
-- they were written at: a start after a snapshot, a hub worker following
-- the others' commits. Every other record (the downlink's changes and
-- their index, two per changed entity, marks, the snapshot) paid an index
-- entry no read uses, about 1.3 us of the server's CPU per row. The
-- bounds are the hub's: store.PrefixFact and the key after its range.
CREATE INDEX hub_kv_fact_version ON hub_kv (version) WHERE key >= 'f/'::bytea AND key < 'f0'::bytea;
DROP INDEX hub_kv_version_idx;
