package server

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// An unacknowledged smoke alarm shows in the hub's metrics with its age,
// under the names the shipped Prometheus rules escalate on.
func TestAlarmMetricsFeedTheEscalationRules(t *testing.T) {
	t.Parallel()
	h := startHub(t)
	e := dialEdge(t, h.MQTTAddr(), "s1", "gw-1")
	raised := time.Now().Add(-90 * time.Second) // the gateway's clock at the raise
	ev, err := event.NewEvent("", 1, hlc.FromTime(raised), &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: true, Building: "B3"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := wire.NewBatch(1, 1, []event.Event{ev}, false, 5)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(wire.Up{Batch: b})
	e.waitAck(1, 1)

	var metrics string
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		resp, err := http.Get(h.HTTPURL() + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		metrics = string(raw)
		return err == nil && resp.StatusCode == 200 && strings.Contains(metrics,
			`linli_hub_alarms_open{acked="false",active="true",kind="smoke",severity="critical",site="s1"} 1`), metrics
	})
	age := regexp.MustCompile(`linli_hub_alarm_unacked_age_seconds\{kind="smoke",severity="critical",site="s1"\} ([0-9.e+]+)`).FindStringSubmatch(metrics)
	if age == nil {
		t.Fatalf("no unacknowledged age in\n%s", metrics)
	}
	if secs, err := strconv.ParseFloat(age[1], 64); err != nil || secs < 90 || secs > 300 {
		t.Fatalf("unacknowledged age %s s, want about 90 (raised 90 s ago)", age[1])
	}
	rules, err := os.ReadFile(filepath.Join(testkit.Root(), "configs", "prometheus", "linli-alarms.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`linli_[a-z_]+`).FindAllString(string(rules), -1) {
		if !strings.Contains(metrics, "\n"+name+"{") {
			t.Errorf("the rules use %s, which the hub does not export", name)
		}
	}
}
