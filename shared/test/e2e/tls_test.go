package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// With TLS on, enrollment pins the hub's site CA by the fingerprint in the
// token, and the edge then syncs over MQTT with TLS.
func TestTLSEnrollmentAndSync(t *testing.T) {
	t.Parallel()
	hubBin, edgeBin := testkit.Binaries(t)
	data := filepath.Join(t.TempDir(), "hub")
	httpAddr, mqttAddr := testkit.FreePort(t), testkit.FreePort(t)
	testkit.Start(t, "hub", hubBin, []string{"--data", data, "--http", httpAddr, "--mqtt-listen", mqttAddr, "--tls", "on"})
	base := "https://" + httpAddr
	var client *http.Client
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		caPEM, err := os.ReadFile(filepath.Join(data, "pki", "ca.pem"))
		if err != nil {
			return false, "no CA yet: " + err.Error()
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, fmt.Sprint(resp.StatusCode)
	})
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + httpAddr + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP answered on the TLS port")
	}
	tokenBytes, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(id string) string {
		body, _ := json.Marshal(map[string]string{"id": id, "site": "s1", "role": "kiosk"})
		req, _ := http.NewRequestWithContext(context.Background(), "POST", base+"/api/v1/devices", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tokenBytes)))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Token string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 201 {
			t.Fatalf("issue: %d %v", resp.StatusCode, err)
		}
		return out.Token
	}
	tok := issue("kiosk-tls")
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("token %q carries no CA fingerprint", tok)
	}
	// A token whose fingerprint is not the hub's: the edge refuses to talk.
	bad := tok[:len(tok)-1] + map[bool]string{true: "0", false: "1"}[strings.HasSuffix(tok, "1")]
	edgeData := filepath.Join(t.TempDir(), "edge")
	out, err := exec.Command(edgeBin, "enroll", "--hub", base, "--token", bad, "--data", edgeData).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "fingerprint") {
		t.Fatalf("enroll with a wrong pin: %v %s", err, out)
	}
	if out, err := exec.Command(edgeBin, "enroll", "--hub", base, "--token", tok, "--data", edgeData).CombinedOutput(); err != nil {
		t.Fatalf("enroll: %v %s", err, out)
	}
	edgeHTTP := testkit.FreePort(t)
	testkit.Start(t, "edge", edgeBin, []string{"--data", edgeData, "--http", edgeHTTP, "--backoff-max", "500ms"})
	e := &edgeProc{ID: "kiosk-tls", URL: "http://" + edgeHTTP, Data: edgeData}
	testkit.WaitHTTP(t, e.URL+"/healthz", 20*time.Second)
	poll.Eventually(t, 20*time.Second, func() (bool, string) { s := e.sync(t); return s.Connected, fmt.Sprintf("%+v", s) })
	if code := e.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R1", "activity": "A1"}, nil); code != 201 {
		t.Fatal(code)
	}
	drained(t, e, 20*time.Second)
	// Plain MQTT is not served on the TLS port.
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("probe").SetConnectTimeout(3 * time.Second))
	if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		c.Disconnect(10)
		t.Fatal("plain MQTT connected to the TLS listener")
	}

}
