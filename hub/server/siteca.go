package server

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/hub/api"
	"linli/hub/pki"
	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/wire"
)

// siteCA rotates the hub's own site CA: Rotate makes the next CA and sends
// it, cross-signed by the current one, down to every site's edges; each
// edge checks the cross-signature, stores the CA next to the one it pinned
// and says so in its hello; Finish moves the hub's certificate to the new
// CA. Only for a hub that made its CA itself (not --tls-cert).
type siteCA struct {
	h   *Hub
	dir string
	mu  sync.Mutex // one step at a time
	// cur is the CA new edges pin (served at /api/v1/ca.pem and in
	// tokens): the new one from Finish on.
	cur atomic.Pointer[caInService]
}

type caInService struct{ pem, fingerprint string }

func newSiteCA(h *Hub) *siteCA {
	s := &siteCA{h: h, dir: filepath.Join(h.cfg.Data, "pki")}
	s.cur.Store(&caInService{string(h.tls.CAPEM), h.tls.Fingerprint})
	return s
}

// inService is api.HubInfo.CA.
func (s *siteCA) inService() (string, string) {
	c := s.cur.Load()
	return c.pem, c.fingerprint
}

func (s *siteCA) Status() (api.CAStatus, error) {
	r, err := pki.Status(s.dir, time.Now())
	if err != nil {
		return api.CAStatus{}, caError(err)
	}
	st := api.CAStatus{Rotation: r, Devices: map[string]string{}}
	target := r.Target()
	for _, d := range s.h.registry.List() {
		if !d.Active() {
			continue
		}
		state := "old"
		if rec, ok := s.h.ingest.Device(d.ID); ok && slices.Contains(rec.CA, target) {
			state = "new"
		}
		st.Devices[d.ID] = state
		if state == "new" {
			st.New++
		} else {
			st.Old++
		}
	}
	return st, nil
}

func (s *siteCA) Rotate() (api.CAStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := pki.Rotate(s.dir, time.Now())
	if err != nil {
		return api.CAStatus{}, caError(err)
	}
	if err := s.sendDown(r); err != nil {
		return api.CAStatus{}, err
	}
	s.h.log.Info("site-CA rotation started: the next CA is on its way to the edges", "current", r.Current, "next", r.Next)
	return s.Status()
}

func (s *siteCA) Finish() (api.CAStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before, err := s.Status()
	if err != nil {
		return api.CAStatus{}, err
	}
	r, err := pki.Finish(s.dir, time.Now())
	if err != nil {
		return api.CAStatus{}, caError(err)
	}
	// The server certificate is issued again by the new CA and served from
	// the next handshake.
	b, err := loadTLS(s.h.cfg)
	if err != nil {
		return api.CAStatus{}, fmt.Errorf("issue the server certificate from the new site CA: %w", err)
	}
	s.cur.Store(&caInService{string(b.CAPEM), b.Fingerprint})
	if err := s.h.certs.Reload(); err != nil {
		return api.CAStatus{}, err
	}
	// Sent again: sites that got their first device since Rotate.
	if err := s.sendDown(r); err != nil {
		return api.CAStatus{}, err
	}
	s.h.log.Info("site CA switched; edges that did not take it fetch it while the cross-certificate is valid, or are enrolled again",
		"current", r.Current, "previous", r.Previous, "devices_old", before.Old, "cross_until", r.CrossUntil)
	return s.Status()
}

func (s *siteCA) Bundle() ([]byte, bool) {
	r, err := pki.Status(s.dir, time.Now())
	if err != nil || r.Phase == pki.PhaseNone || r.Cross == nil {
		return nil, false
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.CA})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Cross})...), true
}

// sendDown puts the trust change in the downlink log of every site the
// hub has devices or a setting for.
func (s *siteCA) sendDown(r pki.Rotation) error {
	body, err := event.Marshal(wire.Trust{CA: r.CA, Cross: r.Cross})
	if err != nil {
		return err
	}
	sites := slices.Clone(s.h.cfg.Sites)
	for _, d := range s.h.registry.List() {
		sites = append(sites, d.Site)
	}
	slices.Sort(sites)
	for _, site := range slices.Compact(sites) {
		if err := s.h.state.SendDown(site, []wire.Change{{Entity: wire.EntityTrust, ID: wire.TrustSiteCA, Body: body}}); err != nil {
			return fmt.Errorf("send the next site CA to %s: %w", site, err)
		}
	}
	return nil
}

// collectors: linli_hub_ca_devices{state="old|new"}.
func (s *siteCA) collectors() []prometheus.Collector {
	var out []prometheus.Collector
	for _, state := range []string{"old", "new"} {
		out = append(out, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "linli_hub_ca_devices",
			Help:        "Enrolled devices by whether they trust the site CA a rotation brings (new) or not yet (old); with no rotation, the CA in service.",
			ConstLabels: prometheus.Labels{"state": state}}, func() float64 {
			st, err := s.Status()
			if err != nil {
				return 0
			}
			if state == "new" {
				return float64(st.New)
			}
			return float64(st.Old)
		}))
	}
	return out
}

func caError(err error) error {
	switch {
	case errors.Is(err, pki.ErrNoRotation), errors.Is(err, pki.ErrNoSiteCA):
		return &httpx.Error{Status: http.StatusConflict, Msg: err.Error()}
	}
	return err
}

// caMain is `linli-hub ca rotate|finish|status`: it asks a running hub's
// API (with the admin token from its data dir) to start a site-CA
// rotation, to switch to the new CA, or where the rotation stands.
func caMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := "usage: linli-hub ca rotate | finish | status  [--hub URL] [--data DIR | --token TOKEN]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	verb := args[0]
	method, path := map[string]string{"rotate": "POST", "finish": "POST", "status": "GET"}[verb], "/api/v1/pki"
	if method == "" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if verb != "status" {
		path += "/" + verb
	}
	fs := flag.NewFlagSet("linli-hub ca "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	hub := fs.String("hub", envOr("LINLI_HUB", "http://127.0.0.1:8080"), "the running hub's HTTP URL")
	data := fs.String("data", envOr("LINLI_DATA", "./data/hub"), "the hub's data dir (for admin.token and its CA)")
	token := fs.String("token", "", "admin API token (default: <data>/admin.token)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	client, tok, err := adminClient(*data, *token)
	if err != nil {
		fmt.Fprintf(stderr, "linli-hub ca: bad setting \"data\": %v\n", err)
		return 2
	}
	var out api.CAStatus
	var raw json.RawMessage
	code, err := call(ctx, client, method, strings.TrimRight(*hub, "/")+path, tok, nil, &raw)
	if err == nil && code < 300 {
		err = json.Unmarshal(raw, &out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "linli-hub ca %s: %v\n", verb, err)
		return 1
	}
	if code >= 300 {
		var e httpx.Error
		if json.Unmarshal(raw, &e) != nil || e.Msg == "" {
			e.Msg = string(raw)
		}
		fmt.Fprintf(stderr, "linli-hub ca %s: the hub answered %d: %s\n", verb, code, e.Msg)
		return 1
	}
	fmt.Fprintf(stdout, "site CA %s: phase %s; devices on the new CA %d, still on the old %d\n", out.Current, out.Phase, out.New, out.Old)
	switch out.Phase {
	case pki.PhaseStarted:
		fmt.Fprintf(stdout, "next CA %s sent to the edges; when every device is on it: linli-hub ca finish\n", out.Next)
	case pki.PhaseSwitched:
		fmt.Fprintf(stdout, "switched from %s; edges that missed it take the new CA until %s, later ones must be enrolled again\n",
			out.Previous, out.CrossUntil.UTC().Format(time.RFC3339))
	}
	ids := slices.Sorted(maps.Keys(out.Devices))
	for _, id := range ids {
		fmt.Fprintf(stdout, "  %-24s %s\n", id, out.Devices[id])
	}
	return 0
}
