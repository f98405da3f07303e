package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"linli/edge/enroll"
	"linli/shared/identity"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// tlsHub is a hub serving TLS with its own site CA, and an admin client
// that trusts the CA in its data dir (read again on each call: a rotation
// replaces it).
type tlsHub struct {
	*testkit.Proc
	bin, data, base, httpAddr, mqttAddr string
}

func startTLSHub(t *testing.T, name string) *tlsHub {
	t.Helper()
	hubBin, _ := testkit.Binaries(t)
	h := &tlsHub{bin: hubBin, data: filepath.Join(t.TempDir(), name), httpAddr: testkit.FreePort(t), mqttAddr: testkit.FreePort(t)}
	h.base = "https://" + h.httpAddr
	h.Proc = testkit.Start(t, name, hubBin, []string{"--data", h.data, "--http", h.httpAddr, "--mqtt-listen", h.mqttAddr, "--tls", "on"})
	h.waitUp(t)
	return h
}

func (h *tlsHub) client(t *testing.T) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if caPEM, err := os.ReadFile(filepath.Join(h.data, "pki", "ca.pem")); err == nil {
		pool.AppendCertsFromPEM(caPEM)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (h *tlsHub) waitUp(t *testing.T) {
	t.Helper()
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		resp, err := h.client(t).Get(h.base + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, fmt.Sprint(resp.StatusCode)
	})
}

// call is an admin API call; it returns the status code.
func (h *tlsHub) call(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(h.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, h.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := h.client(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// enrollKiosk issues a token, enrolls a kiosk with the edge binary and
// starts it.
func (h *tlsHub) enrollKiosk(t *testing.T, id string) *edgeProc {
	t.Helper()
	var out struct{ Token string }
	if code := h.call(t, "POST", "/api/v1/devices", map[string]string{"id": id, "site": "s1", "role": "kiosk"}, &out); code != 201 {
		t.Fatalf("issue a token for %s: %d", id, code)
	}
	_, edgeBin := testkit.Binaries(t)
	data := filepath.Join(t.TempDir(), id)
	if out, err := exec.Command(edgeBin, "enroll", "--hub", h.base, "--token", out.Token, "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("enroll %s: %v %s", id, err, out)
	}
	addr := testkit.FreePort(t)
	e := &edgeProc{ID: id, URL: "http://" + addr, Data: data,
		Proc: testkit.Start(t, id, edgeBin, []string{"--data", data, "--http", addr, "--backoff-max", "500ms"})}
	testkit.WaitHTTP(t, e.URL+"/healthz", 20*time.Second)
	return e
}

// caStatus is what GET /api/v1/pki answers.
type caStatus struct {
	Phase, Current, Next, Previous string
	Devices                        map[string]string
	Old, New                       int
}

func (h *tlsHub) ca(t *testing.T, verb string) string {
	t.Helper()
	out, err := exec.Command(h.bin, "ca", verb, "--hub", h.base, "--data", h.data).CombinedOutput()
	if err != nil {
		t.Fatalf("linli-hub ca %s: %v\n%s", verb, err, out)
	}
	return string(out)
}

func checkIns(t *testing.T, e *edgeProc, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if code := e.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": fmt.Sprintf("R%d", i), "activity": "A1"}, nil); code != 201 {
			t.Fatalf("check-in %d on %s: %d", i, e.ID, code)
		}
	}
}

// trusted are the fingerprints of the CAs an edge's stored identity
// trusts.
func trusted(t *testing.T, e *edgeProc) []string {
	t.Helper()
	id, err := enroll.Load(e.Data)
	if err != nil {
		t.Fatal(err)
	}
	return id.Fingerprints()
}

// A site CA is rotated with edges enrolled, none enrolled again: the
// online kiosk takes the new CA from the hub's signed downlink before the
// switch, keeps syncing (every check-in stored once) over MQTT and HTTPS
// after the hub's certificate moved to the new CA; the kiosk that was off
// for the whole rotation fetches the cross-signed bundle when its TLS no
// longer verifies, takes the new CA and delivers what it held.
func TestSiteCARotation(t *testing.T) {
	t.Parallel()
	h := startTLSHub(t, "hub")
	online, away := h.enrollKiosk(t, "kiosk-on"), h.enrollKiosk(t, "kiosk-away")
	for _, e := range []*edgeProc{online, away} {
		checkIns(t, e, 0, 5)
		drained(t, e, 20*time.Second)
	}
	oldCA := trusted(t, online)
	if len(oldCA) != 1 {
		t.Fatalf("kiosk trusts %v before the rotation", oldCA)
	}
	if err := away.Stop(); err != nil {
		t.Fatal(err)
	}
	checkIns(t, away, 5, 5) // nothing: it is off
	if out := h.ca(t, "rotate"); !strings.Contains(out, "phase started") {
		t.Fatalf("ca rotate said:\n%s", out)
	}
	var st caStatus
	if h.call(t, "GET", "/api/v1/pki", nil, &st); st.Phase != "started" || st.Current != oldCA[0] || st.Next == "" {
		t.Fatalf("after rotate: %+v", st)
	}
	newCA := st.Next
	// The online kiosk takes the new CA from the downlink and says so.
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		h.call(t, "GET", "/api/v1/pki", nil, &st)
		return st.Devices["kiosk-on"] == "new" && st.Devices["kiosk-away"] == "old", fmt.Sprintf("%+v", st)
	})
	if got := trusted(t, online); !slices.Equal(got, []string{oldCA[0], newCA}) {
		t.Fatalf("online kiosk trusts %v, want the old and the new CA", got)
	}
	checkIns(t, online, 5, 10)
	drained(t, online, 20*time.Second)

	if out := h.ca(t, "finish"); !strings.Contains(out, "phase switched") {
		t.Fatalf("ca finish said:\n%s", out)
	}
	// The hub's certificate is the new CA's, served without a restart.
	conn, err := tls.Dial("tcp", h.httpAddr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the chain only
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	caPEM, _ := os.ReadFile(filepath.Join(h.data, "pki", "ca.pem"))
	b, _ := pem.Decode(caPEM)
	if identity.Fingerprint(b.Bytes) != newCA {
		t.Fatal("pki/ca.pem is not the new CA after finish")
	}
	if ca, _ := x509.ParseCertificate(b.Bytes); leaf.CheckSignatureFrom(ca) != nil {
		t.Fatal("the hub's certificate is not issued by the new CA after finish")
	}
	// Every session starts again under the new certificate.
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	h.Restart()
	h.waitUp(t)
	poll.Eventually(t, 20*time.Second, func() (bool, string) { s := online.sync(t); return s.Connected, fmt.Sprintf("%+v", s) })
	checkIns(t, online, 10, 15)
	drained(t, online, 20*time.Second)
	// The kiosk's own HTTPS call to the hub, with its stored identity.
	id, err := enroll.Load(online.Data)
	if err != nil {
		t.Fatal(err)
	}
	if ans, err := enroll.Check(context.Background(), id); err != nil || ans.Identity != "ok" {
		t.Fatalf("identity check over HTTPS after the switch: %+v %v", ans, err)
	}

	// The kiosk that was away: its TLS to the new certificate fails, it
	// fetches the bundle, checks the cross-signature and carries on.
	away.Restart()
	testkit.WaitHTTP(t, away.URL+"/healthz", 20*time.Second)
	checkIns(t, away, 5, 8)
	drained(t, away, 30*time.Second)
	if got := trusted(t, away); !slices.Equal(got, []string{oldCA[0], newCA}) {
		t.Fatalf("returning kiosk trusts %v, want the old and the new CA", got)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		h.call(t, "GET", "/api/v1/pki", nil, &st)
		return st.Phase == "switched" && st.New == 2 && st.Old == 0, fmt.Sprintf("%+v", st)
	})
	if out := h.ca(t, "status"); !strings.Contains(out, "kiosk-away") || !strings.Contains(out, "devices on the new CA 2") {
		t.Fatalf("ca status said:\n%s", out)
	}
	// Each check-in reached the hub once.
	for e, n := range map[*edgeProc]int{online: 15, away: 8} {
		var evs []struct {
			Seq  uint64
			Body map[string]any
		}
		if code := h.call(t, "GET", "/api/v1/events?device="+e.ID+"&after=0&limit=1000", nil, &evs); code != 200 {
			t.Fatalf("events of %s: %d", e.ID, code)
		}
		seen := map[string]int{}
		for _, ev := range evs {
			if r, ok := ev.Body["resident"].(string); ok {
				seen[r]++
			}
		}
		for i := range n {
			if seen[fmt.Sprintf("R%d", i)] != 1 {
				t.Errorf("%s: check-in R%d stored %d times", e.ID, i, seen[fmt.Sprintf("R%d", i)])
			}
		}
		if len(seen) != n {
			t.Errorf("%s: %d residents checked in at the hub, want %d", e.ID, len(seen), n)
		}
	}
}

// Someone answering at the hub's address with a CA of its own, and a
// rotation bundle cross-signed by that CA, does not get a kiosk to trust
// it: the bundle is refused and counted, the kiosk's identity does not
// change, and it never connects.
func TestSiteCAForgedBundleRefused(t *testing.T) {
	t.Parallel()
	h := startTLSHub(t, "hub")
	k := h.enrollKiosk(t, "kiosk-1")
	checkIns(t, k, 0, 2)
	drained(t, k, 20*time.Second)
	before, err := os.ReadFile(filepath.Join(k.Data, enroll.Dir, "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	// An impostor: another hub, with its own CA rotated so that it hands
	// out a bundle, then listening where the real hub did.
	imp := startTLSHub(t, "impostor")
	imp.ca(t, "rotate")
	if err := imp.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	hubBin, _ := testkit.Binaries(t)
	imp.Proc = testkit.Start(t, "impostor-at-hub", hubBin, []string{"--data", imp.data, "--http", h.httpAddr, "--mqtt-listen", h.mqttAddr, "--tls", "on"})
	imp.base, imp.httpAddr = h.base, h.httpAddr
	imp.waitUp(t)
	checkIns(t, k, 2, 3)
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		n := metricValue(t, k.URL, "linli_edge_trust_refused_total")
		return n >= 1, fmt.Sprintf("refused %v", n)
	})
	after, err := os.ReadFile(filepath.Join(k.Data, enroll.Dir, "identity.json"))
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the kiosk's identity changed after a forged bundle (%v)", err)
	}
	if s := k.sync(t); s.Connected || s.Pending != 1 {
		t.Fatalf("kiosk talking to the impostor: %+v", s)
	}
	if log := k.Log(); strings.Count(log, "site-CA bundle refused") != 1 {
		t.Fatalf("refusal logged %d times, want once:\n%s", strings.Count(log, "site-CA bundle refused"), log)
	}
}

// metricValue reads one unlabelled metric from a /metrics page (-1 when
// absent).
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s/metrics: %d %v", base, resp.StatusCode, err)
	}
	for _, line := range strings.Split(string(page), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}
