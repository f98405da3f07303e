package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"linli/shared/test/process"
)

// hub is a linli-hub process.
type hub struct {
	*proc
	url   string // http://…
	mqtt  string // tcp://… for edges
	data  string
	token string
}

// startHub runs a hub in dir: with its embedded broker when broker is "",
// else against that external broker.
func (e *runEnv) startHub(ctx context.Context, dir, broker string, extra ...string) (*hub, error) {
	httpAddr, err := process.FreeAddr()
	if err != nil {
		return nil, err
	}
	h := &hub{url: "http://" + httpAddr, data: filepath.Join(dir, "hub")}
	args := []string{"--data", h.data, "--http", httpAddr, "--log-level", "warn"}
	if broker == "" {
		mq, err := process.FreeAddr()
		if err != nil {
			return nil, err
		}
		args = append(args, "--mqtt-listen", mq)
		h.mqtt = "tcp://" + mq
	} else {
		args = append(args, "--broker", broker, "--id", "hub-bench")
		h.mqtt = broker
	}
	args = append(append(args, extra...), e.cfg.HubArgs...)
	if h.proc, err = startProc(dir, "hub", e.hubBin(), args); err != nil {
		return nil, err
	}
	if err := h.ready(ctx); err != nil {
		h.Kill()
		return nil, err
	}
	return h, nil
}

// launchHub starts a hub behind the external broker without waiting for
// it: a hub that writes Mosquitto's files must run before the Mosquitto
// that reads them. id names the hub on the broker.
func (e *runEnv) launchHub(dir, broker, id string, extra ...string) (*hub, error) {
	httpAddr, err := process.FreeAddr()
	if err != nil {
		return nil, err
	}
	h := &hub{url: "http://" + httpAddr, data: filepath.Join(dir, "hub"), mqtt: broker}
	args := []string{"--data", h.data, "--http", httpAddr, "--log-level", "warn", "--broker", broker, "--id", id}
	args = append(append(args, extra...), e.cfg.HubArgs...)
	if h.proc, err = startProc(dir, "hub", e.hubBin(), args); err != nil {
		return nil, err
	}
	return h, nil
}

// ready waits until the hub answers /healthz and reads its admin token.
func (h *hub) ready(ctx context.Context) error {
	if err := waitHTTP(ctx, h.url+"/healthz", h.proc); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	tok, err := os.ReadFile(filepath.Join(h.data, "admin.token"))
	if err != nil {
		return err
	}
	h.token = strings.TrimSpace(string(tok))
	return nil
}

// hubDevice is a row of the hub's GET /api/v1/devices.
type hubDevice struct {
	ID       string `json:"id"`
	AckedSeq uint64 `json:"acked_seq"`
	Received uint64 `json:"received"`
}

func (h *hub) devices(ctx context.Context) (map[string]hubDevice, error) {
	var ds []hubDevice
	if err := getJSON(ctx, h.url+"/api/v1/devices", h.token, &ds); err != nil {
		return nil, err
	}
	out := make(map[string]hubDevice, len(ds))
	for _, d := range ds {
		out[d.ID] = d
	}
	return out, nil
}

// edgeProc is a linli-edge process.
type edgeProc struct {
	*proc
	id   string
	url  string
	data string
}

// startEdge runs a gateway edge (it takes check-ins and access events
// both) with data dir data against broker.
func (e *runEnv) startEdge(ctx context.Context, dir, id, data, broker string, extra ...string) (*edgeProc, error) {
	return e.startEdgeEnv(ctx, dir, id, data, broker, nil, extra...)
}

// startEdgeEnv is startEdge with extra environment variables.
func (e *runEnv) startEdgeEnv(ctx context.Context, dir, id, data, broker string, env []string, extra ...string) (*edgeProc, error) {
	httpAddr, err := process.FreeAddr()
	if err != nil {
		return nil, err
	}
	ed := &edgeProc{id: id, url: "http://" + httpAddr, data: data}
	args := []string{"--id", id, "--site", benchSite, "--role", "gateway", "--building", "B1", "--data", data,
		"--http", httpAddr, "--broker", broker, "--log-level", "warn", "--backoff-max", "500ms"}
	args = append(append(args, extra...), e.cfg.EdgeArgs...)
	if ed.proc, err = startProc(dir, id, e.edgeBin(), args, env...); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, ed.url+"/healthz", ed.proc); err != nil {
		ed.Kill()
		return nil, fmt.Errorf("edge: %w", err)
	}
	return ed, nil
}

// syncState is the edge's GET /api/v1/sync.
type syncState struct {
	Connected bool   `json:"connected"`
	Pending   uint64 `json:"pending"`
	LastSeq   uint64 `json:"last_seq"`
	AckedSeq  uint64 `json:"acked_seq"`
}

func (ed *edgeProc) sync(ctx context.Context) (syncState, error) {
	var s syncState
	err := getJSON(ctx, ed.url+"/api/v1/sync", "", &s)
	return s, err
}

// startMosquitto runs Mosquitto with the shipped config, its listener
// moved to a free loopback port and its persistence into dir.
func (e *runEnv) startMosquitto(ctx context.Context, dir string) (url string, p *proc, err error) {
	base, err := os.ReadFile(e.cfg.MosqConf)
	if err != nil {
		return "", nil, err
	}
	addr, err := process.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	url, pp, err := process.StartMosquitto(ctx, process.Mosquitto{Bin: e.cfg.Mosquitto, Base: string(base), Addr: addr, Dir: dir})
	if err != nil {
		return "", nil, fmt.Errorf("mosquitto: %w", err)
	}
	return url, &proc{pp}, nil
}

// stopAll stops processes in order, logging failures.
func (e *runEnv) stopAll(ps ...*proc) {
	for _, p := range ps {
		if p == nil {
			continue
		}
		if err := p.Stop(); err != nil {
			e.log.Warn("stop", "proc", p.Name, "err", err)
		}
	}
}

// metric reads one unlabelled sample from a Prometheus text endpoint.
func metric(ctx context.Context, base, name string) (float64, error) {
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
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s/metrics has no %s", base, name)
}

// enroll registers device id with the hub and enrolls the edge whose data
// dir is data, as an installer would: only enrolled devices receive their
// site's downlink (notices, activities, alarms).
func (e *runEnv) enroll(ctx context.Context, h *hub, id, role, data string) error {
	body, err := json.Marshal(map[string]string{"id": id, "site": benchSite, "role": role})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url+"/api/v1/devices", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := httpc.Do(req)
	if err != nil {
		return fmt.Errorf("enroll %s: %w", id, err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("enroll %s: %d %s %v", id, resp.StatusCode, out.Error, err)
	}
	cmd := exec.CommandContext(ctx, e.edgeBin(), "enroll", "--hub", h.url, "--token", out.Token, "--data", data)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("enroll %s: %w: %s", id, err, oneLine(string(msg)))
	}
	return nil
}
