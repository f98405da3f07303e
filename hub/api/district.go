package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"linli/hub/pgstore"
	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// DistrictSource counts a district's reports and alarms with SQL over the
// entity tables of the PostgreSQL store (pgstore.Store.District).
type DistrictSource interface {
	District(ctx context.Context, sites []string, limits pgstore.Limits, now time.Time) ([]pgstore.SiteCounts, error)
}

// districtSite is one site's line of GET /api/v1/district.
type districtSite struct {
	Site   string `json:"site"`
	Name   string `json:"name,omitempty"`
	NameEn string `json:"name_en,omitempty"`
	// OpenReports are submitted, accepted or in progress; merged
	// duplicates follow their report and are not counted.
	OpenReports int `json:"open_reports"`
	// OverdueReports are open past the site plan's limit for their
	// category (the dashboard's overdue rule).
	OverdueReports int `json:"overdue_reports"`
	// OpenAlarms wait for an operator's clear; ActiveAlarms of them are
	// still reported by their sensor or door.
	OpenAlarms   int `json:"open_alarms"`
	ActiveAlarms int `json:"active_alarms"`
	// Devices are those seen or enrolled (revoked ones left out);
	// healthy: online with nothing left to send, the dashboard's green.
	Devices        int `json:"devices"`
	DevicesHealthy int `json:"devices_healthy"`
	DevicesStale   int `json:"devices_stale"`
}

// district serves GET /api/v1/district: per site the caller may see,
// open and overdue reports, open and active alarms, and device health.
// On PostgreSQL (District set) the report and alarm counts come from SQL
// over the entity tables; otherwise from the merged state in memory. The
// device counts come from the device records either way.
func (a *API) district(w http.ResponseWriter, r *http.Request) error {
	p, err := a.Caller(r)
	if err != nil {
		return err
	}
	seen := a.knownSites()
	for _, s := range p.Sites {
		seen[s] = true
	}
	var sites []string
	for s := range seen {
		if p.Sees(s) {
			sites = append(sites, s)
		}
	}
	slices.Sort(sites)
	now := time.Now()
	counts, err := a.districtCounts(r.Context(), sites, now)
	if err != nil {
		return err
	}
	out := make([]districtSite, len(sites))
	for i, s := range sites {
		c := counts[s]
		out[i] = districtSite{Site: s, OpenReports: c.OpenReports, OverdueReports: c.OverdueReports,
			OpenAlarms: c.OpenAlarms, ActiveAlarms: c.ActiveAlarms}
		if plan, ok := a.Plans[s]; ok {
			out[i].Name, out[i].NameEn = plan.Name, plan.NameEn
		}
	}
	a.countDevices(out)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"sites": out})
	return nil
}

// districtCounts counts reports and alarms of sites, by site.
func (a *API) districtCounts(ctx context.Context, sites []string, now time.Time) (map[string]pgstore.SiteCounts, error) {
	out := map[string]pgstore.SiteCounts{}
	if a.District != nil {
		limits := pgstore.Limits{}
		for s, plan := range a.Plans {
			for cat, d := range plan.SLA {
				if limits[s] == nil {
					limits[s] = map[string]time.Duration{}
				}
				limits[s][cat] = time.Duration(d)
			}
		}
		rows, err := a.District.District(ctx, sites, limits, now)
		if err != nil {
			return nil, fmt.Errorf("district counts: %w", err)
		}
		for _, c := range rows {
			out[c.Site] = c
		}
		return out, nil
	}
	overdue := a.countOverdue(now, func(merge.Report) string { return "" })
	a.State.Read(func(m *merge.State) {
		for _, s := range sites {
			c := pgstore.SiteCounts{Site: s, OverdueReports: overdue[s][""]}
			for _, rep := range m.Reports(s) {
				if reportOpen(rep.Status) && rep.MergedInto == "" {
					c.OpenReports++
				}
			}
			for _, al := range m.OpenAlarms(s) {
				c.OpenAlarms++
				if al.Active {
					c.ActiveAlarms++
				}
			}
			out[s] = c
		}
	})
	return out, nil
}

// reportOpen tells the statuses of a report still being worked on.
func reportOpen(status string) bool {
	return status != event.ReportResolved && status != event.ReportRejected
}

// countDevices fills in the device counts of out's sites.
func (a *API) countDevices(out []districtSite) {
	if a.Devices == nil {
		return
	}
	var devs []deviceView
	for _, d := range a.Devices.Devices() {
		devs = append(devs, viewDevice(d))
	}
	devs = a.enrolledView(devs)
	for _, d := range devs {
		if d.Revoked {
			continue
		}
		i, ok := slices.BinarySearchFunc(out, d.Site, func(s districtSite, site string) int { return strings.Compare(s.Site, site) })
		if !ok {
			continue
		}
		out[i].Devices++
		if d.Online && d.Backlog == 0 {
			out[i].DevicesHealthy++
		} else {
			out[i].DevicesStale++
		}
	}
}
