package e2e

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linli/shared/test/testkit"
)

// The real hub files an Open311 request located by lat/long alone (it
// used to panic and drop the connection), gives the location and the
// residents' committee back as JSON and XML, and the hub and the edge
// both expose the counter of recovered handler panics.
func TestOpen311LatLongOnTheRealHub(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	plan := filepath.Join(testkit.Root(), "configs", "site-xiangyang.yaml")
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "", "--site-plans", plan)
	k := startEdge(t, "kiosk-b1", "xiangyang", "kiosk", "tcp://"+mqttAddr, "--building", "B1")

	form := url.Values{"api_key": {h.token(t)}, "jurisdiction_id": {"xiangyang"}, "service_code": {"facilities"},
		"description": {"小区东门路灯不亮"}, "lat": {"31.2304"}, "long": {"121.4737"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", h.URL+"/open311/v2/requests.json", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST with lat/long and no address_string: %v (the hub dropped the connection)", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var posted []struct {
		ID string `json:"service_request_id"`
	}
	if err != nil || resp.StatusCode != 201 || json.Unmarshal(body, &posted) != nil || len(posted) != 1 || posted[0].ID == "" {
		t.Fatalf("POST: %d %s %v, want 201 with a service_request_id", resp.StatusCode, body, err)
	}

	var got []struct {
		Lat    float64 `json:"lat"`
		Long   float64 `json:"long"`
		Agency string  `json:"agency_responsible"`
	}
	if code, err := testkit.Do(ctx, "GET", h.URL+"/open311/v2/requests/"+posted[0].ID+".json", "", nil, &got); err != nil || code != 200 ||
		len(got) != 1 || got[0].Lat != 31.2304 || got[0].Long != 121.4737 || got[0].Agency != "向阳社区居委会" {
		t.Fatalf("GET the request: %d %v %+v, want lat 31.2304, long 121.4737, agency 向阳社区居委会", code, err, got)
	}
	var x struct {
		Requests []struct {
			Lat  string `xml:"lat"`
			Long string `xml:"long"`
		} `xml:"request"`
	}
	xreq, err := http.NewRequestWithContext(ctx, "GET", h.URL+"/open311/v2/requests.xml?jurisdiction_id=xiangyang", nil)
	if err != nil {
		t.Fatal(err)
	}
	xresp, err := http.DefaultClient.Do(xreq)
	if err != nil {
		t.Fatal(err)
	}
	xbody, err := io.ReadAll(xresp.Body)
	xresp.Body.Close()
	if err != nil || xresp.StatusCode != 200 || !strings.HasPrefix(xresp.Header.Get("Content-Type"), "text/xml") ||
		xml.Unmarshal(xbody, &x) != nil || len(x.Requests) != 1 || x.Requests[0].Lat != "31.2304" || x.Requests[0].Long != "121.4737" {
		t.Fatalf("requests.xml: %d %s %v", xresp.StatusCode, xbody, err)
	}

	if n := metric(t, h.URL, "linli_hub_http_panics_total"); n != 0 {
		t.Errorf("hub: %v handler panics, want 0", n)
	}
	if n := metric(t, k.URL, "linli_edge_http_panics_total"); n != 0 {
		t.Errorf("kiosk: %v handler panics, want 0", n)
	}
}
