package opstatus

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBar(t *testing.T) {
	for _, tc := range []struct {
		done, total uint64
		want        string
	}{
		{0, 10, "[----------]   0%"},
		{5, 10, "[#####-----]  50%"},
		{10, 10, "[##########] 100%"},
		{12, 10, "[##########] 100%"}, // acked past what the edge said: full
		{0, 0, "[##########] 100%"},   // nothing written: nothing to drain
		{999, 1000, "[#########-]  99%"},
	} {
		if got := Bar(tc.done, tc.total, 10); got != tc.want {
			t.Errorf("Bar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP linli_hub_devices Devices the hub knows.
# TYPE linli_hub_devices gauge
linli_hub_devices 3
linli_hub_device_backlog_events{device="k 1",site="s1"} 12
linli_hub_tls_cert_expiry_timestamp_seconds 1.8661536e+09
bad line
`
	got, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"linli_hub_devices": 3,
		`linli_hub_device_backlog_events{device="k 1",site="s1"}`: 12,
		"linli_hub_tls_cert_expiry_timestamp_seconds":             1.8661536e+09,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestWhen(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now.Add(-90 * time.Second), "2026-12-06T11:58:30Z (1m30s ago)"},
		{now.Add(-3 * time.Hour), "2026-12-06T09:00:00Z (3h0m0s ago)"},
		{now.Add(400 * 24 * time.Hour), "2028-01-10T12:00:00Z (in 400d0h)"},
	} {
		if got := When(tc.t, now); got != tc.want {
			t.Errorf("When(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}
