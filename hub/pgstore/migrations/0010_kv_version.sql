-- The records written since a version: the hub workers sharing a
-- district read the facts the others committed every half second
-- (version above their mark), and a start after a snapshot reads only the
-- facts written after it; without this index both stepped over every row.
CREATE INDEX hub_kv_version_idx ON hub_kv (version);
