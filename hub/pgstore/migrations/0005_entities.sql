-- The merged community state, for people to query with SQL: one table per
-- entity kind, a row per entity as the hub last sent it down to the site's
-- edges, written in the same transaction as the facts that changed it.
-- Columns an analyst filters on are real columns; view holds the whole
-- view as JSON (the field names of the hub's API). Times are the hub's
-- HLC wall clock, in UTC.

-- Reports. created_at is the time of the report's "created" step;
-- closed_at the time it last became resolved or rejected (NULL while
-- open). A merged duplicate names the report it follows in merged_into.
CREATE TABLE reports (
	site        text        NOT NULL,
	id          text        NOT NULL,
	number      text        NOT NULL DEFAULT '',
	status      text        NOT NULL,
	category    text        NOT NULL,
	title       text        NOT NULL,
	building    text        NOT NULL DEFAULT '',
	unit        text        NOT NULL DEFAULT '',
	votes       integer     NOT NULL DEFAULT 0,
	note        text        NOT NULL DEFAULT '',
	merged_into text        NOT NULL DEFAULT '',
	created_at  timestamptz,
	updated_at  timestamptz NOT NULL,
	closed_at   timestamptz,
	view        jsonb       NOT NULL,
	PRIMARY KEY (site, id)
);
-- A site's reports, newest first (the report list's pages).
CREATE INDEX reports_site_created ON reports (site, created_at DESC NULLS LAST, id DESC);
-- Open reports of a site by age (the report list, open and overdue counts).
CREATE INDEX reports_site_status ON reports (site, status, created_at);
-- The site map: reports per building.
CREATE INDEX reports_site_building ON reports (site, building, status);
CREATE INDEX reports_site_category ON reports (site, category, created_at);
CREATE INDEX reports_site_updated ON reports (site, updated_at);
-- Time to close, by when reports were closed.
CREATE INDEX reports_site_closed ON reports (site, closed_at);

-- A report's public timeline, one row per step in order (n from 0): filed,
-- each status the office set with its reply, reopened, merged. A child
-- table rather than a JSON array so that "how long from filed to
-- resolved" is a join and a GROUP BY; no resident or operator names.
CREATE TABLE report_steps (
	site   text        NOT NULL,
	report text        NOT NULL,
	n      integer     NOT NULL CHECK (n >= 0),
	event  text        NOT NULL,
	at     timestamptz NOT NULL,
	status text        NOT NULL DEFAULT '',
	reply  text        NOT NULL DEFAULT '',
	PRIMARY KEY (site, report, n),
	FOREIGN KEY (site, report) REFERENCES reports (site, id) ON DELETE CASCADE
);
CREATE INDEX report_steps_event ON report_steps (site, event, at);
CREATE INDEX report_steps_at ON report_steps (site, at);

-- Activities with their seat counts.
CREATE TABLE activities (
	site          text        NOT NULL,
	id            text        NOT NULL,
	title         text        NOT NULL,
	kind          text        NOT NULL,
	venue         text        NOT NULL DEFAULT '',
	start_at      timestamptz,
	end_at        timestamptz,
	capacity      integer     NOT NULL DEFAULT 0,
	seats_left    integer     NOT NULL DEFAULT 0,
	confirmed     integer     NOT NULL DEFAULT 0,
	waitlisted    integer     NOT NULL DEFAULT 0,
	attended      integer     NOT NULL DEFAULT 0,
	cancelled     boolean     NOT NULL DEFAULT false,
	updated_at    timestamptz NOT NULL,
	view          jsonb       NOT NULL,
	PRIMARY KEY (site, id)
);
CREATE INDEX activities_site_start ON activities (site, start_at);

-- Attendance: one row per resident (by the id the hub knows them by, a
-- pseudonym where the site uses them) on an activity's lists. A child
-- table rather than a JSON array: an activity can hold thousands of
-- residents, and a change writes only the rows that changed. status is
-- confirmed, waitlisted or attended (checked in inside the activity's
-- window without being on either list); attended is set for everyone who
-- checked in inside the window. The waitlist's order is in the
-- activity's view (view->'waitlist'): a column of places would rewrite
-- the whole queue at every promotion.
CREATE TABLE activity_attendance (
	site     text    NOT NULL,
	activity text    NOT NULL,
	resident text    NOT NULL,
	status   text    NOT NULL CHECK (status IN ('confirmed', 'waitlisted', 'attended')),
	attended boolean NOT NULL DEFAULT false,
	PRIMARY KEY (site, activity, resident),
	FOREIGN KEY (site, activity) REFERENCES activities (site, id) ON DELETE CASCADE
);
CREATE INDEX activity_attendance_resident ON activity_attendance (site, resident);

-- Notices in force or expired; a withdrawn notice is deleted (edges drop
-- it too; the hub keeps it in its own history).
CREATE TABLE notices (
	site       text        NOT NULL,
	id         text        NOT NULL,
	title      text        NOT NULL,
	category   text        NOT NULL,
	buildings  text[]      NOT NULL DEFAULT '{}', -- empty: the whole site
	expires_at timestamptz,                       -- NULL: never
	updated_at timestamptz NOT NULL,
	view       jsonb       NOT NULL,
	PRIMARY KEY (site, id)
);
CREATE INDEX notices_site_updated ON notices (site, updated_at);

-- Alarms, one row per source and kind (their id is site:source:kind),
-- with the state of the current or last episode. open: waiting for an
-- operator's clear; active: the source still reports it.
CREATE TABLE alarms (
	site       text        NOT NULL,
	id         text        NOT NULL,
	building   text        NOT NULL DEFAULT '',
	source     text        NOT NULL,
	kind       text        NOT NULL,
	severity   text        NOT NULL DEFAULT '',
	place      text        NOT NULL DEFAULT '',
	active     boolean     NOT NULL,
	open       boolean     NOT NULL,
	acked      boolean     NOT NULL,
	acked_by   text        NOT NULL DEFAULT '',
	first_at   timestamptz NOT NULL,
	last_at    timestamptz NOT NULL,
	cleared_at timestamptz,
	closed_at  timestamptz,
	view       jsonb       NOT NULL,
	PRIMARY KEY (site, id)
);
CREATE INDEX alarms_site_open ON alarms (site, open, kind);
CREATE INDEX alarms_site_first ON alarms (site, first_at);
