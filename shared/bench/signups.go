package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// signups is scenario 9: residents signing up at an enrolled kiosk to one
// activity it knows, whose every change goes back down to the kiosk,
// against the same sign-ups to an activity nobody knows (a plain write).
// Each pair is an unknown run and a known run, each on a fresh hub and
// kiosk.
func signups(ctx context.Context, e *runEnv) error {
	n := e.pick(10_000, 30_000)
	window := n / 6 // 5,000 of 30,000: the first and the last sixth
	var rate, drift, cpu, bytesRatio pairs
	var last signupResult
	for range min(e.cfg.Pairs, 3) {
		u, err := e.signupRun(ctx, false, n, window)
		if err != nil {
			return fmt.Errorf("unknown activity: %w", err)
		}
		k, err := e.signupRun(ctx, true, n, window)
		if err != nil {
			return fmt.Errorf("known activity: %w", err)
		}
		rate.add(u.rate, k.rate)
		drift.add(k.first, k.last)
		cpu.add(u.cpuPer.Seconds(), k.cpuPer.Seconds())
		bytesRatio.add(k.up, k.down)
		last = k
	}
	sc := "9 sign-ups"
	i := rate.medianPair()
	e.res.add(rate.judged(Row{Scenario: sc, Figure: fmt.Sprintf("%s sign-ups to one activity the kiosk knows, 4 clients; the median pair", groupThousands(int64(n))),
		Value: fmtRate(rate.scen[i]), Baseline: fmtRate(rate.base[i]) + " (to an unknown activity)", Target: "≥ 50 %"}, fmtPct, func(r float64) bool { return r >= 0.5 }))
	i = drift.medianPair()
	e.res.add(drift.judged(Row{Scenario: sc, Figure: fmt.Sprintf("rate over the last %s sign-ups against the first %s", groupThousands(int64(window)), groupThousands(int64(window))),
		Value: fmtRate(drift.scen[i]), Baseline: fmtRate(drift.base[i]), Target: "≥ 80 %"}, fmtPct, func(r float64) bool { return r >= 0.8 }))
	i = cpu.medianPair()
	e.res.add(cpu.judged(Row{Scenario: sc, Figure: "kiosk CPU per sign-up, known activity against unknown (a plain write)",
		Value: fmt.Sprintf("%.0f µs", cpu.scen[i]*1e6), Baseline: fmt.Sprintf("%.0f µs", cpu.base[i]*1e6), Target: "≤ 2×"}, fmtRatio, func(r float64) bool { return r <= 2 }))
	i = bytesRatio.medianPair()
	e.res.add(bytesRatio.judged(Row{Scenario: sc, Figure: "downlink bytes received by the kiosk against the uplink bytes of the same sign-ups",
		Value: fmtMiB(uint64(bytesRatio.scen[i])), Baseline: fmtMiB(uint64(bytesRatio.base[i])), Target: "≤ 2×"}, fmtRatio, func(r float64) bool { return r <= 2 }))
	e.res.add(Row{Scenario: sc, Figure: "downlink changes received by the kiosk in the last known run: deltas / snapshots",
		Value: fmt.Sprintf("%.0f / %.0f", last.deltas, last.snapshots), Verdict: Info})
	e.res.note("**9 sign-ups**: a hub and an enrolled kiosk (role kiosk) online; 4 clients post %s sign-ups of distinct residents "+
		"(`POST /api/v1/checkins`) back to back to one activity (capacity 0, two days ahead) that the kiosk holds, so each change of its "+
		"lists goes back down to the kiosk; the baseline posts the same to an activity no one knows. Rates are over the whole run and "+
		"over its first and last %s sign-ups; CPU is the kiosk's over the run and until the hub's last change is applied; bytes are "+
		"the kiosk's `linli_edge_downlink_bytes_total` and `linli_edge_uplink_bytes_total` over the same time. %d pairs.",
		groupThousands(int64(n)), groupThousands(int64(window)), rate.n())
	return nil
}

type signupResult struct {
	rate, first, last float64 // sign-ups per second: all, first window, last window
	cpuPer            time.Duration
	up, down          float64 // bytes
	deltas, snapshots float64
}

func (e *runEnv) signupRun(ctx context.Context, known bool, n, window int) (signupResult, error) {
	var res signupResult
	name := "signups-unknown"
	if known {
		name = "signups-known"
	}
	dir := e.dir(name)
	h, err := e.startHub(ctx, dir, "")
	if err != nil {
		return res, err
	}
	defer e.stopAll(h.proc)
	const id = "kiosk-signups"
	data := filepath.Join(dir, "kiosk")
	if err := e.enroll(ctx, h, id, "kiosk", data); err != nil {
		return res, err
	}
	k, err := e.startEdge(ctx, dir, id, data, h.mqtt, "--role", "kiosk")
	if err != nil {
		return res, err
	}
	defer e.stopAll(k.proc)
	if err := poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		s, err := k.sync(ctx)
		return err == nil && s.Connected, err
	}, k.proc, h.proc); err != nil {
		return res, fmt.Errorf("kiosk never connected: %w", err)
	}
	activity := "S-unknown"
	if known {
		activity = "S-known"
		start := time.Now().Add(48 * time.Hour).UTC()
		body := fmt.Appendf(nil, `{"id":%q,"title":"义诊 sign-ups","site":%q,"start":%q,"end":%q,"capacity":0}`,
			activity, benchSite, start.Format(time.RFC3339), start.Add(2*time.Hour).Format(time.RFC3339))
		if err := postAuth(ctx, h.url+"/api/v1/activities", h.token, body); err != nil {
			return res, err
		}
		if err := poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
			c, ok, err := kioskConfirmed(ctx, k.url, activity)
			return ok && c == 0, err
		}, k.proc, h.proc); err != nil {
			return res, fmt.Errorf("kiosk never got the activity: %w", err)
		}
	}
	cpu0, err := k.cpu()
	if err != nil {
		return res, err
	}
	down0, err1 := metricSum(ctx, k.url, "linli_edge_downlink_bytes_total")
	up0, err2 := metric(ctx, k.url, "linli_edge_uplink_bytes_total")
	if err := errors.Join(err1, err2); err != nil {
		return res, err
	}

	var (
		next, done atomic.Int64
		marks      [3]time.Time // first window done, last window starts, all done
		mu         sync.Mutex
		wg         sync.WaitGroup
		first      error
	)
	start := time.Now()
	for range 4 {
		c, err := dialRaw(strings.TrimPrefix(k.url, "http://"))
		if err != nil {
			return res, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				body := fmt.Appendf(nil, `{"resident":"R%06d","activity":%q}`, i, activity)
				if code, ans, err := c.post("/api/v1/checkins", body); err != nil || code != http.StatusCreated {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("sign-up %d: %d %s %v", i, code, ans, err)
					}
					mu.Unlock()
					return
				}
				d := done.Add(1)
				now := time.Now()
				mu.Lock()
				switch d {
				case int64(window):
					marks[0] = now
				case int64(n - window):
					marks[1] = now
				case int64(n):
					marks[2] = now
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return res, first
	}
	res.rate = float64(n) / marks[2].Sub(start).Seconds()
	res.first = float64(window) / marks[0].Sub(start).Seconds()
	res.last = float64(window) / marks[2].Sub(marks[1]).Seconds()

	// Until the hub has every sign-up and, for the known activity, the
	// kiosk holds the hub's list of all of them.
	if err := poll(ctx, 120*time.Second, 20*time.Millisecond, func() (bool, error) {
		s, err := k.sync(ctx)
		if err != nil || s.Pending > 0 {
			return false, err
		}
		if !known {
			return true, nil
		}
		c, _, err := kioskConfirmed(ctx, k.url, activity)
		return c == n, err
	}, k.proc, h.proc); err != nil {
		return res, fmt.Errorf("sign-ups not synced: %w", err)
	}
	cpu1, err := k.cpu()
	if err != nil {
		return res, err
	}
	down1, err1 := metricSum(ctx, k.url, "linli_edge_downlink_bytes_total")
	up1, err2 := metric(ctx, k.url, "linli_edge_uplink_bytes_total")
	res.deltas, _ = metricSum(ctx, k.url, `linli_edge_downlink_messages_total{form="delta"`)
	res.snapshots, _ = metricSum(ctx, k.url, `linli_edge_downlink_messages_total{form="snapshot"`)
	if err := errors.Join(err1, err2); err != nil {
		return res, err
	}
	res.cpuPer = (cpu1 - cpu0) / time.Duration(n)
	res.up, res.down = up1-up0, down1-down0
	e.log.Info("sign-ups", "known", known, "rate", int(res.rate), "first", int(res.first), "last", int(res.last),
		"cpu_per", res.cpuPer, "up", int(res.up), "down", int(res.down))
	return res, nil
}

// kioskConfirmed is how many residents the kiosk lists as confirmed for
// activity, and whether it knows the activity.
func kioskConfirmed(ctx context.Context, base, activity string) (int, bool, error) {
	var list []struct {
		ID        string `json:"id"`
		Confirmed int    `json:"confirmed"`
	}
	if err := getJSON(ctx, base+"/api/v1/activities", "", &list); err != nil {
		return 0, false, err
	}
	for _, a := range list {
		if a.ID == activity {
			return a.Confirmed, true, nil
		}
	}
	return 0, false, nil
}

// metricSum adds up every sample of a Prometheus text endpoint whose line
// starts with prefix (a name, or a name and the start of its labels).
func metricSum(ctx context.Context, base, prefix string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sum := 0.0
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) || (len(line) > len(prefix) && !strings.ContainsAny(line[len(prefix):len(prefix)+1], "{ ,")) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// postAuth posts a JSON body with the admin token and wants a 2xx.
func postAuth(ctx context.Context, url, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, oneLine(b.String()))
	}
	return nil
}
