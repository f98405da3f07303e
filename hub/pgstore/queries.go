package pgstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/shared/event"
)

// The dashboard's reads over the entity tables. Each filters on indexed
// columns only; TestHotQueriesUseIndexes checks their plans on a site of
// 10,000 reports.

// openStatuses are the statuses of a report still being worked on.
var openStatuses = []string{event.ReportSubmitted, event.ReportAccepted, event.ReportInProgress}

// ReportRow is a report as the dashboard's list and map show it.
type ReportRow struct {
	ID, Number, Status, Category, Title, Building, Unit string
	Votes                                               int
	MergedInto                                          string
	Created                                             *time.Time
	Updated                                             time.Time
}

// Query texts, exported through Queries for the plan and schema tests.
const (
	reportPageSQL = `SELECT id, number, status, category, title, building, unit, votes, merged_into, created_at, updated_at
		FROM reports WHERE site = $1
		ORDER BY created_at DESC NULLS LAST, id DESC LIMIT $2`
	reportListSQL = `SELECT id, number, status, category, title, building, unit, votes, merged_into, created_at, updated_at
		FROM reports WHERE site = $1 AND status = ANY($2::text[])
		ORDER BY created_at DESC NULLS LAST, id DESC LIMIT $3`
	siteMapSQL = `SELECT id, number, status, category, title, building, unit, votes, merged_into, created_at, updated_at
		FROM reports WHERE site = $1 AND status = ANY($2::text[]) AND merged_into = ''
		ORDER BY building, created_at`
	// districtSQL counts per site: open reports (merged duplicates follow
	// their report and are not counted), overdue ones (open past their
	// site's limit for their category: $2..$4 are the limits as rows of
	// site, category, seconds), open alarms, and alarms still active.
	districtSQL = `SELECT s.site,
		(SELECT count(*) FROM reports r
			WHERE r.site = s.site AND r.status = ANY($6::text[]) AND r.merged_into = '') AS open_reports,
		(SELECT count(*) FROM reports r
			JOIN unnest($2::text[], $3::text[], $4::bigint[]) AS l(site, category, secs)
				ON l.site = r.site AND l.category = r.category
			WHERE r.site = s.site AND r.status = ANY($6::text[]) AND r.merged_into = ''
				AND r.created_at + l.secs * interval '1 second' < $5) AS overdue_reports,
		(SELECT count(*) FROM alarms a WHERE a.site = s.site AND a.open) AS open_alarms,
		(SELECT count(*) FROM alarms a WHERE a.site = s.site AND a.open AND a.active) AS active_alarms
		FROM unnest($1::text[]) AS s(site) ORDER BY s.site`
)

// ReportList is a page of a site's reports in the given statuses (every
// status when none), newest first.
func (s *Store) ReportList(ctx context.Context, site string, statuses []string, limit int) ([]ReportRow, error) {
	if len(statuses) == 0 {
		return s.reportRows(ctx, "report list", reportPageSQL, site, limit)
	}
	return s.reportRows(ctx, "report list", reportListSQL, site, statuses, limit)
}

// SiteMap is what the dashboard's map of a site shows: its open reports,
// duplicates left out, by building and age.
func (s *Store) SiteMap(ctx context.Context, site string) ([]ReportRow, error) {
	return s.reportRows(ctx, "site map", siteMapSQL, site, openStatuses)
}

func (s *Store) reportRows(ctx context.Context, what, sql string, args ...any) ([]ReportRow, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ReportRow])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// SiteCounts is one site's line of the district view.
type SiteCounts struct {
	Site           string
	OpenReports    int
	OverdueReports int
	OpenAlarms     int
	ActiveAlarms   int
}

// Limits are the sites' time limits to close a report, by site and
// category (a site's plan's sla).
type Limits map[string]map[string]time.Duration

// District counts, for each of sites, the open and overdue reports (by
// limits at now) and the open and active alarms.
func (s *Store) District(ctx context.Context, sites []string, limits Limits, now time.Time) ([]SiteCounts, error) {
	var lSites, lCats []string
	var lSecs []int64
	for _, site := range slices.Sorted(maps.Keys(limits)) {
		for _, cat := range slices.Sorted(maps.Keys(limits[site])) {
			lSites, lCats = append(lSites, site), append(lCats, cat)
			lSecs = append(lSecs, int64(limits[site][cat]/time.Second))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, districtSQL, sites, lSites, lCats, lSecs, now, openStatuses)
	if err != nil {
		return nil, fmt.Errorf("district counts: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[SiteCounts])
	if err != nil {
		return nil, fmt.Errorf("district counts: %w", err)
	}
	return out, nil
}

// HotQuery is one of the dashboard's reads with example arguments, for
// the plan tests.
type HotQuery struct {
	Name string
	SQL  string
	Args []any
}

// HotQueries are the dashboard's reads over the entity tables, with
// arguments for site.
func HotQueries(site string) []HotQuery {
	return []HotQuery{
		{"report list", reportPageSQL, []any{site, 100}},
		{"resolved reports", reportListSQL, []any{site, []string{event.ReportResolved}, 100}},
		{"open reports", reportListSQL, []any{site, openStatuses, 100}},
		{"site map", siteMapSQL, []any{site, openStatuses}},
		{"district", districtSQL, []any{[]string{site}, []string{site}, []string{"fire_safety"}, []int64{4 * 3600},
			time.Now(), openStatuses}},
	}
}
