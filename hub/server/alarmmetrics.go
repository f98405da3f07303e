package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/shared/merge"
)

// alarmCollector exports the open alarms, so that Prometheus can escalate
// one nobody acknowledges (configs/prometheus/linli-alarms.rules.yml): how
// many are open by site, kind, severity and state, and how long the oldest
// unacknowledged one of each site and kind has waited.
type alarmCollector struct {
	read func(func(*merge.State))
	now  func() time.Time
}

var (
	alarmsOpenDesc = prometheus.NewDesc("linli_hub_alarms_open",
		"Open alarms (not yet cleared by an operator), by site, kind, severity, whether the source still reports it and whether it is acknowledged.",
		[]string{"site", "kind", "severity", "active", "acked"}, nil)
	alarmUnackedAgeDesc = prometheus.NewDesc("linli_hub_alarm_unacked_age_seconds",
		"Age of the oldest open alarm nobody has acknowledged, by site, kind and severity (absent when there is none).",
		[]string{"site", "kind", "severity"}, nil)
)

func (c alarmCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- alarmsOpenDesc
	ch <- alarmUnackedAgeDesc
}

func (c alarmCollector) Collect(ch chan<- prometheus.Metric) {
	type open struct{ site, kind, severity, active, acked string }
	type unacked struct{ site, kind, severity string }
	counts := map[open]int{}
	oldest := map[unacked]time.Time{}
	c.read(func(m *merge.State) {
		for _, a := range m.OpenAlarms("") {
			counts[open{a.Site, a.Kind, a.Severity, boolLabel(a.Active), boolLabel(a.Acked)}]++
			if a.Acked {
				continue
			}
			k, since := unacked{a.Site, a.Kind, a.Severity}, a.First.Time()
			if t, ok := oldest[k]; !ok || since.Before(t) {
				oldest[k] = since
			}
		}
	})
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(alarmsOpenDesc, prometheus.GaugeValue, float64(n), k.site, k.kind, k.severity, k.active, k.acked)
	}
	now := c.now()
	for k, since := range oldest {
		ch <- prometheus.MustNewConstMetric(alarmUnackedAgeDesc, prometheus.GaugeValue, max(0, now.Sub(since).Seconds()), k.site, k.kind, k.severity)
	}
}

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
