-- The entities' views as json, not jsonb. A view is written at every
-- change of its entity and read by an analyst now and then; jsonb parsed
-- each written view into its binary form, about 4 us of the server's CPU
-- per report row (a quarter of the row, single-statement test), while
-- every column a query filters on is a typed column beside it. json keeps
-- the text as the hub wrote it: ->, ->> and json_array_elements read it as
-- before, and a query that wants jsonb's operators or a GIN index casts
-- (view::jsonb). report_steps, which reads the steps, is made again over
-- the json column.
DROP VIEW report_steps;
ALTER TABLE reports ALTER COLUMN view TYPE json;
ALTER TABLE activities ALTER COLUMN view TYPE json;
ALTER TABLE notices ALTER COLUMN view TYPE json;
ALTER TABLE alarms ALTER COLUMN view TYPE json;
CREATE VIEW report_steps AS
SELECT r.site,
	r.id AS report,
	(s.ord - 1)::integer AS n,
	s.step->>'event' AS event,
	timestamptz 'epoch' + ((s.step->>'hlc')::bigint >> 16) * interval '1 millisecond' AS at,
	coalesce(s.step->>'status', '') AS status,
	coalesce(s.step->>'reply', '') AS reply
FROM reports r
CROSS JOIN LATERAL json_array_elements(r.view->'steps') WITH ORDINALITY AS s(step, ord);
