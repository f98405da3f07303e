-- A read-only role for Grafana and analysts on the hub's PostgreSQL
-- database: SELECT on the entity tables and nothing else: not the raw
-- events, the device registry, operators or the audit log, and not
-- activity_attendance, whose rows name residents (by pseudonym where the
-- site uses them); grant that one to analysts who must see who attended. Run it as the
-- database's owner after the hub has migrated it; run it again after an
-- upgrade that adds tables. Then give the role a login:
--   ALTER ROLE linli_grafana LOGIN PASSWORD '…';
DO $$
BEGIN
	CREATE ROLE linli_grafana NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
	NULL; -- made by an earlier run
END
$$;
GRANT USAGE ON SCHEMA public TO linli_grafana;
GRANT SELECT ON reports, report_steps, activities, notices, alarms TO linli_grafana;
