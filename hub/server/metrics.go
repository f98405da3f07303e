package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/hub/store"
)

// deviceCollector exports each device's sync state as the hub last heard
// it, so a fleet dashboard and alerts see one edge's backlog without
// scraping the edge (which may be behind NAT).
type deviceCollector struct {
	devices func() []store.DeviceRecord
	now     func() time.Time
}

var (
	descDevices = prometheus.NewDesc("linli_hub_devices", "Devices the hub knows.", nil, nil)
	descBacklog = prometheus.NewDesc("linli_hub_device_backlog_events",
		"Events a device has written that the hub does not hold yet, as the device last said.", []string{"site", "device"}, nil)
	descOldest = prometheus.NewDesc("linli_hub_device_oldest_unsynced_age_seconds",
		"Age of the oldest event a device has not got acked, as it last said (0 with no backlog).", []string{"site", "device"}, nil)
	descOnline = prometheus.NewDesc("linli_hub_device_online", "1 while the device's status is online.", []string{"site", "device"}, nil)
	descLost   = prometheus.NewDesc("linli_hub_device_lost_events",
		"Seqs of a device this hub will never get: the edge no longer held them after a restore from a backup that did not cover them.", []string{"site", "device"}, nil)
	descSeen = prometheus.NewDesc("linli_hub_device_last_seen_timestamp_seconds",
		"When the hub last heard from the device (Unix time).", []string{"site", "device"}, nil)
)

func (c deviceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDevices, descBacklog, descOldest, descOnline, descLost, descSeen} {
		ch <- d
	}
}

func (c deviceCollector) Collect(ch chan<- prometheus.Metric) {
	ds := c.devices()
	ch <- prometheus.MustNewConstMetric(descDevices, prometheus.GaugeValue, float64(len(ds)))
	now := c.now()
	for _, d := range ds {
		var backlog uint64
		if d.LastSeq > d.Acked {
			backlog = d.LastSeq - d.Acked
		}
		var oldest float64
		if backlog > 0 && !d.Oldest.IsZero() {
			oldest = max(0, now.Sub(d.Oldest).Seconds())
		}
		online := 0.0
		if d.Online {
			online = 1
		}
		ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(backlog), d.Site, d.ID)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, oldest, d.Site, d.ID)
		ch <- prometheus.MustNewConstMetric(descOnline, prometheus.GaugeValue, online, d.Site, d.ID)
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.GaugeValue, float64(d.Lost), d.Site, d.ID)
		if !d.LastSeen.IsZero() {
			ch <- prometheus.MustNewConstMetric(descSeen, prometheus.GaugeValue, float64(d.LastSeen.Unix()), d.Site, d.ID)
		}
	}
}
