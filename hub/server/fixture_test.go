package server

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// untar extracts a .tar.gz into dir.
func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o700)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, os.FileMode(hdr.Mode)&0o777)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The data dir of a hub from before stores had a version
// (testdata/make-fixture.sh: a kiosk's five check-ins and a report, an
// operator, the report accepted) opens with today's hub: its store is
// taken as version 1 and brought up to date, and everything in it reads
// back — events, the merged report, the operator's login, the audit log,
// the admin token.
func TestOpensAStoreAnOlderHubWrote(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	untar(t, filepath.Join("testdata", "store-v1.tar.gz"), dir)
	h, err := Start(context.Background(), hubConfig(dir), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	if v, found, err := h.store.Version(); err != nil || !found || v != storeVersion {
		t.Fatalf("store version %d (found %v, %v), want %d", v, found, err, storeVersion)
	}
	base, admin := h.HTTPURL(), map[string]string{"Authorization": "Bearer " + h.AdminToken()}
	get := func(path string, out any) {
		t.Helper()
		resp, body := send(t, "GET", base+path, admin, "")
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	var evs []struct {
		Seq  uint64         `json:"seq"`
		Kind string         `json:"kind"`
		Body map[string]any `json:"body"`
	}
	get("/api/v1/events?device=kiosk-1&after=0&limit=100", &evs)
	if len(evs) != 6 || evs[0].Body["resident"] != "R1" || evs[5].Seq != 6 {
		t.Fatalf("events %+v, want the 5 check-ins and the report", evs)
	}
	var rep struct{ Status, Note, Title string }
	get("/api/v1/reports/kiosk-1.6", &rep)
	if rep.Status != "accepted" || rep.Note != "fixture note" || rep.Title != "fixture report" {
		t.Fatalf("report %+v", rep)
	}
	var audit []struct{ Method, Path string }
	get("/api/v1/audit", &audit)
	var paths []string
	for _, e := range audit {
		paths = append(paths, e.Method+" "+e.Path)
	}
	if got := strings.Join(paths, ","); !strings.Contains(got, "POST /api/v1/operators") || !strings.Contains(got, "PATCH /api/v1/reports/kiosk-1.6") {
		t.Fatalf("audit log %s", got)
	}
	if resp, body := send(t, "POST", base+"/api/v1/login", nil, `{"name":"op1","password":"fixture-password-1"}`); resp.StatusCode != 200 {
		t.Fatalf("the operator's login: %d %s", resp.StatusCode, body)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
}
