package pgstore_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"linli/shared/event"
	"linli/shared/test/testkit"
)

// grafanaQuery is one SQL query of the shipped dashboard.
type grafanaQuery struct{ where, sql string }

// dashboardQueries reads the PostgreSQL dashboard: its data source
// variable's type, its panels' data source types, and every SQL query in
// it (panels and template variables).
func dashboardQueries(t *testing.T) (dsType string, panelTypes []string, queries []grafanaQuery, vars map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testkit.Root(), "configs", "grafana", "dashboards", "linli-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct {
				Name, Type string
				Query      any
				Current    struct{ Value any }
			}
		}
		Panels []struct {
			Title      string
			Datasource struct{ Type string }
			Targets    []struct {
				RawSQL     string `json:"rawSql"`
				Datasource struct{ Type string }
			}
		}
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("linli-state.json: %v", err)
	}
	vars = map[string]string{}
	for _, v := range d.Templating.List {
		q, _ := v.Query.(string)
		switch v.Type {
		case "datasource":
			dsType = q
		case "query":
			queries = append(queries, grafanaQuery{"variable " + v.Name, q})
		case "custom":
			vars[v.Name], _ = v.Current.Value.(string)
		}
	}
	for _, p := range d.Panels {
		panelTypes = append(panelTypes, p.Datasource.Type)
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			panelTypes = append(panelTypes, tg.Datasource.Type)
			queries = append(queries, grafanaQuery{"panel " + p.Title, tg.RawSQL})
		}
	}
	return dsType, panelTypes, queries, vars
}

// The shipped Grafana dashboard parses, uses the data source the
// provisioning example defines, and every SQL query in it runs on the
// newest schema, as the read-only role configs/grafana/postgres-reader.sql
// makes, and returns rows on a site with a report of each kind, an
// alarm and an activity.
func TestGrafanaDashboardQueries(t *testing.T) {
	dsType, panelTypes, queries, vars := dashboardQueries(t)
	raw, err := os.ReadFile(filepath.Join(testkit.Root(), "configs", "grafana", "provisioning", "datasources", "postgres.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Datasources []struct {
			Type     string
			JSONData map[string]any `yaml:"jsonData"`
		}
	}
	if err := yaml.Unmarshal(raw, &prov); err != nil {
		t.Fatalf("postgres.yaml: %v", err)
	}
	if len(prov.Datasources) != 1 || prov.Datasources[0].Type != dsType || dsType != "grafana-postgresql-datasource" {
		t.Fatalf("provisioned data sources %+v, dashboard's %q", prov.Datasources, dsType)
	}
	for _, pt := range panelTypes {
		if pt != dsType {
			t.Errorf("a panel or query uses data source type %q, want %q", pt, dsType)
		}
	}

	st := open(t, testkit.StartPostgres(t))
	ctx := context.Background()
	c := newCommunity(t, "xiangyang")
	project(t, st, c.site, c.apply("kiosk-b1",
		&event.Report{Category: "fire_safety", Title: "楼道堆放杂物", Building: "B1"},
		&event.Report{Category: "elevator", Title: "电梯异响", Building: "B2"}))
	project(t, st, c.site, c.apply("hub", &event.ReportPatch{Report: "kiosk-b1.1", Status: event.ReportResolved, Note: "已清理", Who: "op"}))
	project(t, st, c.site, c.apply("gw-b3", &event.Alarm{Sensor: "smoke-3-1", Type: "smoke", Active: true, Building: "B3"}))
	project(t, st, c.site, c.apply("hub", &event.ActivitySet{ID: "A7", Title: "太极拳晨练", Type: "activity", Site: c.site,
		Start: c.now + 3_600_000, Capacity: 20}))
	project(t, st, c.site, c.apply("kiosk-b1", &event.Checkin{Resident: "R1", Activity: "A7", Action: "in"}))

	reader, err := os.ReadFile(filepath.Join(testkit.Root(), "configs", "grafana", "postgres-reader.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, string(reader)); err != nil {
		t.Fatalf("postgres-reader.sql: %v", err)
	}

	// Grafana's interpolation: $__timeFilter(col) becomes a range (here
	// one that holds the seeded data), a multi-value $site a quoted list,
	// a custom variable its current value.
	from := time.UnixMilli(c.now).Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	timeFilter := regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`)
	expand := func(sql string) string {
		sql = timeFilter.ReplaceAllString(sql, "$1 BETWEEN '"+from+"' AND now() + interval '1 day'")
		sql = strings.ReplaceAll(sql, "$site", "'xiangyang','other'")
		for name, value := range vars {
			sql = strings.ReplaceAll(sql, "$"+name, value)
		}
		return sql
	}
	for _, q := range queries {
		sql := expand(q.sql)
		if strings.Contains(sql, "$") {
			t.Errorf("%s: a variable Grafana would not fill: %s", q.where, sql)
			continue
		}
		var rows int
		err := pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE linli_grafana"); err != nil {
				return err
			}
			rs, err := tx.Query(ctx, sql)
			if err != nil {
				return err
			}
			for rs.Next() {
				rows++
			}
			return rs.Err()
		})
		if err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, sql)
		} else if rows == 0 {
			t.Errorf("%s: no rows on a site with data for it\n%s", q.where, sql)
		}
	}
}
