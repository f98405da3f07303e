-- Every edge event exactly once, under its site, device and seq, in the
-- form the edge stored it (CBOR, the device left out).
CREATE TABLE events (
	site   text   NOT NULL,
	device text   NOT NULL,
	seq    bigint NOT NULL CHECK (seq > 0),
	body   bytea  NOT NULL,
	PRIMARY KEY (site, device, seq)
);

-- Events that failed validation, kept with the reason so that nothing an
-- edge sent is silently lost.
CREATE TABLE quarantine (
	site   text   NOT NULL,
	device text   NOT NULL,
	seq    bigint NOT NULL,
	body   bytea  NOT NULL,
	reason text   NOT NULL,
	PRIMARY KEY (site, device, seq)
);

-- What the hub knows of each device: the whole record as CBOR, with the
-- contiguous high-water mark beside it for queries.
CREATE TABLE devices (
	site   text   NOT NULL,
	id     text   NOT NULL,
	acked  bigint NOT NULL,
	record bytea  NOT NULL,
	PRIMARY KEY (site, id)
);
