package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// promtool is Debian's (package prometheus, which make deps installs).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed (%v): run `apt-get install -y prometheus` (make deps does)", err)
	}
	return p
}

// ruleFiles is every Prometheus rule file shipped, whoever added it.
func ruleFiles(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(testkit.Root(), "configs", "prometheus", "*.yml"))
	var files []string
	for _, f := range all {
		if !strings.HasSuffix(f, ".test.yml") {
			files = append(files, f)
		}
	}
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in configs/prometheus (%v)", err)
	}
	return files
}

// ruleTests is every promtool unit-test file shipped beside the rules
// (NAME.test.yml): they are checked with promtool test rules.
func ruleTests(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testkit.Root(), "configs", "prometheus", "*.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestPrometheusRules: every rule file in configs/prometheus passes
// promtool check rules, and every NAME.test.yml beside them promtool test rules.
func TestPrometheusRules(t *testing.T) {
	bin := promtool(t)
	for _, f := range ruleFiles(t) {
		out, err := exec.Command(bin, "check", "rules", f).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", filepath.Base(f), err, out)
		}
	}
	for _, f := range ruleTests(t) {
		cmd := exec.Command(bin, "test", "rules", filepath.Base(f))
		cmd.Dir = filepath.Dir(f)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool test rules %s: %v\n%s", filepath.Base(f), err, out)
		}
	}
}

// scrapeNames returns the metric names a /metrics page exposes.
func scrapeNames(t *testing.T, client *http.Client, url string, into map[string]bool) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "# TYPE ") {
			if f := strings.Fields(l); len(f) >= 3 {
				into[f[2]] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// liveMetricNames runs a real hub with a synced edge (device metrics) and
// a hub with TLS on (certificate metric) and collects every metric name
// their /metrics pages expose.
func liveMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), testkit.FreePort(t), "")
	e := startEdge(t, "kiosk-mon", "s1", "kiosk", h.MQTT)
	if code, err := testkit.Do(context.Background(), "POST", e.URL+"/api/v1/checkins", "",
		map[string]string{"resident": "R1", "activity": "A1"}, nil); err != nil || code != 201 {
		t.Fatalf("check-in: %d %v", code, err)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		s := e.sync(t)
		return s.Connected && s.Pending == 0, "edge not synced"
	})
	scrapeNames(t, http.DefaultClient, h.URL+"/metrics", names)
	scrapeNames(t, http.DefaultClient, e.URL+"/metrics", names)

	hubBin, _ := testkit.Binaries(t)
	addr := testkit.FreePort(t)
	testkit.Start(t, "hub-tls", hubBin, []string{"--data", filepath.Join(t.TempDir(), "hub-tls"), "--http", addr,
		"--mqtt-listen", testkit.FreePort(t), "--tls", "on"})
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		resp, err := insecure.Get("https://" + addr + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	scrapeNames(t, insecure, "https://"+addr+"/metrics", names)
	return names
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promBraces   = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promNumbers  = regexp.MustCompile(`\b[0-9][0-9a-zA-Z_.+]*`) // 30, 1e9, 15m
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords = []string{"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "inf", "nan"}
)

// metricNames lists the metric names a PromQL expression reads.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = promBraces.ReplaceAllString(s, " ")
	s = promNumbers.ReplaceAllString(s, " ")
	var out []string
	for _, m := range promIdent.FindAllStringSubmatch(s, -1) {
		if m[1] != "" || slices.Contains(promKeywords, strings.ToLower(m[0])) {
			continue // a function call or a keyword
		}
		out = append(out, m[0])
	}
	return out
}

func TestMetricNamesOfPromQL(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up{job="linli-hub"} == 0`, []string{"up"}},
		{`sum by (code) (rate(linli_edge_http_requests_total{instance="$instance"}[5m]))`, []string{"linli_edge_http_requests_total"}},
		{`linli_hub_tls_cert_expiry_timestamp_seconds - time() < 30 * 86400`, []string{"linli_hub_tls_cert_expiry_timestamp_seconds"}},
		{`a_total - b offset 15m and on (x) c`, []string{"a_total", "b", "c"}},
	} {
		if got := metricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// exprs collects every "expr" string in a decoded JSON or YAML value.
func exprs(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "expr" {
				*out = append(*out, s)
			} else {
				exprs(x, out)
			}
		}
	case []any:
		for _, x := range v {
			exprs(x, out)
		}
	}
}

// sqlDashboard reports whether a decoded dashboard reads the hub's
// PostgreSQL store rather than Prometheus (its data source variable).
func sqlDashboard(d map[string]any) bool {
	t, _ := d["templating"].(map[string]any)
	list, _ := t["list"].([]any)
	for _, v := range list {
		if v, ok := v.(map[string]any); ok && v["type"] == "datasource" {
			return v["query"] == "grafana-postgresql-datasource"
		}
	}
	return false
}

// TestDashboardsAndRulesUseRealMetrics: each Grafana dashboard parses, and
// every metric its queries (and the rules in linli-rules.yml) read is one
// a real hub or edge exposes; a dashboard may also read a metric another
// rule file names. Catches a renamed metric leaving a dashboard or an
// alert silently empty.
func TestDashboardsAndRulesUseRealMetrics(t *testing.T) {
	live := liveMetricNames(t)
	live["up"] = true // Prometheus's own
	known := map[string]bool{}
	for n := range live {
		known[n] = true
	}
	for _, f := range ruleFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range regexp.MustCompile(`\blinli_[a-z0-9_]+`).FindAllString(string(b), -1) {
			known[n] = true
		}
	}
	// Our own rules read live metrics only, but for the backup age, which
	// the backup feature exports once a backup has run.
	var ours []string
	b, err := os.ReadFile(filepath.Join(testkit.Root(), "configs", "prometheus", "linli-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(l), "expr:"); ok {
			ours = append(ours, e)
		}
	}
	if len(ours) == 0 {
		t.Fatal("no expr in linli-rules.yml")
	}
	for _, e := range ours {
		for _, n := range metricNames(e) {
			if !live[n] && n != "linli_hub_backup_last_success_timestamp_seconds" {
				t.Errorf("linli-rules.yml reads %s, which no real hub or edge exposes: %s", n, e)
			}
		}
	}
	dashboards, err := filepath.Glob(filepath.Join(testkit.Root(), "configs", "grafana", "dashboards", "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards (%v)", err)
	}
	for _, f := range dashboards {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		if sqlDashboard(d) {
			continue // SQL, not PromQL: hub/pgstore's TestGrafanaDashboardQueries runs its queries
		}
		var es []string
		exprs(d, &es)
		if len(es) == 0 {
			t.Errorf("%s: no queries", filepath.Base(f))
		}
		for _, e := range es {
			for _, n := range metricNames(e) {
				if !known[n] {
					t.Errorf("%s reads %s, which no real hub or edge exposes and no rule file names: %s", filepath.Base(f), n, e)
				}
			}
		}
	}
}

// iniSections parses a systemd unit file: section → key → values (a key
// may repeat). A line that is neither a comment, a section nor key=value
// is an error.
func iniSections(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l[1 : len(l)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", filepath.Base(path), i+1, l)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// TestSystemdUnits: the units are hardened (each key below, as set) and,
// where systemd-analyze exists, verify without a warning with ExecStart
// pointed at real binaries.
func TestSystemdUnits(t *testing.T) {
	hardening := map[string]string{
		"User": "linli", "Group": "linli", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ReadWritePaths": "/var/lib/linli", "PrivateTmp": "yes", "ProtectHome": "yes",
		"CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
	}
	units := []struct {
		file  string
		extra map[string]string
	}{
		{"linli-hub.service", map[string]string{"ExecReload": "/bin/kill -HUP $MAINPID", "PrivateDevices": "yes"}},
		{"linli-edge@.service", map[string]string{"SupplementaryGroups": "gpio i2c"}},
	}
	dir := filepath.Join(testkit.Root(), "configs", "systemd")
	analyze, analyzeErr := exec.LookPath("systemd-analyze")
	hubBin, edgeBin := testkit.Binaries(t)
	for _, u := range units {
		t.Run(u.file, func(t *testing.T) {
			svc := iniSections(t, filepath.Join(dir, u.file))["Service"]
			for k, want := range hardening {
				if got := svc[k]; len(got) != 1 || got[0] != want {
					t.Errorf("%s: %s=%q, want %q", u.file, k, got, want)
				}
			}
			for k, want := range u.extra {
				if got := svc[k]; len(got) != 1 || got[0] != want {
					t.Errorf("%s: %s=%q, want %q", u.file, k, got, want)
				}
			}
			if analyzeErr != nil {
				t.Logf("systemd-analyze not installed: unit checked as INI only")
				return
			}
			b, err := os.ReadFile(filepath.Join(dir, u.file))
			if err != nil {
				t.Fatal(err)
			}
			text := strings.NewReplacer("/usr/local/bin/linli-hub", hubBin, "/usr/local/bin/linli-edge", edgeBin).Replace(string(b))
			name := strings.Replace(u.file, "@.", "@kiosk.", 1) // verify an instance of the template
			tmp := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", tmp).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", u.file, err, out)
			}
		})
	}
}

// TestLogFormat: --log-format json (flag, LINLI_LOG_FORMAT, config key
// log_format) makes every log line of the real binaries one JSON object;
// a bad value exits 2 naming the setting.
func TestLogFormat(t *testing.T) {
	hubBin, edgeBin := testkit.Binaries(t)
	conf := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(conf, []byte("log_format: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, bin string
		args, env []string
	}{
		{"hub env", hubBin, []string{"--data", filepath.Join(t.TempDir(), "hub")}, []string{"LINLI_LOG_FORMAT=json"}},
		{"edge flag", edgeBin, []string{"--data", filepath.Join(t.TempDir(), "k"), "--log-format", "json"}, nil},
		{"edge file", edgeBin, []string{"--data", filepath.Join(t.TempDir(), "k"), "--config", conf}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			httpAddr := testkit.FreePort(t)
			args := append([]string{"--http", httpAddr}, tc.args...)
			if tc.bin == hubBin {
				args = append(args, "--mqtt-listen", testkit.FreePort(t))
			} else {
				args = append(args, "--broker", "tcp://"+testkit.FreePort(t))
			}
			p := testkit.Start(t, "proc", tc.bin, args, tc.env...)
			testkit.WaitHTTP(t, "http://"+httpAddr+"/healthz", 20*time.Second)
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, l := range strings.Split(p.Log(), "\n") {
				if !strings.HasPrefix(l, "time=") && !strings.HasPrefix(l, "{") {
					continue // the runner's header and the "serving" line on stdout
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["msg"] == nil {
					t.Errorf("not a JSON log line: %q", l)
				}
				n++
			}
			if n == 0 {
				t.Errorf("no log lines in %q", p.Log())
			}
		})
	}
	for _, bin := range []string{hubBin, edgeBin} {
		cmd := exec.Command(bin, "--log-format", "xml")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), `"log-format"`) {
			t.Errorf("%s --log-format xml: %v %q, want exit 2 naming log-format", filepath.Base(bin), err, out)
		}
	}
}
