package api

import (
	"encoding/json"
	"encoding/xml"
	"net/url"
	"strings"
	"testing"
	"time"

	"linli/shared/event"
	"linli/shared/merge"
)

const formType = "application/x-www-form-urlencoded"

// xiangyang gives site s1 a plan naming its residents' committee.
func xiangyang(a *API) {
	a.Plans = map[string]SitePlan{"s1": {Site: "s1", Name: "向阳社区", Agency: "向阳社区居委会"}}
}

// A GeoReport client may say where with lat/long alone; that used to
// panic (index out of range on the empty address_string) and drop the
// connection.
func TestOpen311PostWithLatLong(t *testing.T) {
	d := newDash(t, xiangyang)
	for _, tc := range []struct {
		name, ctype, body string
		lat, long         float64
		building          string
	}{
		{"form, no address_string", formType, url.Values{"jurisdiction_id": {"s1"}, "service_code": {"facilities"},
			"description": {"路灯不亮"}, "lat": {"31.2304"}, "long": {"121.4737"}}.Encode(), 31.2304, 121.4737, ""},
		{"form, blank address_string", formType, url.Values{"jurisdiction_id": {"s1"}, "service_code": {"sanitation"},
			"description": {"垃圾满了"}, "address_string": {"   "}, "lat": {"-33.5"}, "long": {"-70.25"}}.Encode(), -33.5, -70.25, ""},
		{"form, lat/long and a building", formType, url.Values{"jurisdiction_id": {"s1"}, "service_code": {"noise"},
			"description": {"噪音"}, "address_string": {"B3 2-101"}, "lat": {"0"}, "long": {"0"}}.Encode(), 0, 0, "B3"},
		{"JSON numbers", "application/json", `{"jurisdiction_id":"s1","service_code":"elevator","description":"电梯停了","lat":31.25,"long":121.5}`,
			31.25, 121.5, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := d.call(t, "op", "POST", "/open311/v2/requests.json", tc.ctype, tc.body)
			var posted []posted311
			if err := json.Unmarshal([]byte(body), &posted); code != 201 || err != nil || len(posted) != 1 || posted[0].ID == "" {
				t.Fatalf("POST: %d %s, want 201 with a service_request_id", code, body)
			}
			code, body = d.call(t, "", "GET", "/open311/v2/requests/"+posted[0].ID+".json", "", "")
			var got []struct {
				Lat       *float64 `json:"lat"`
				Long      *float64 `json:"long"`
				AddressID string   `json:"address_id"`
			}
			if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil || len(got) != 1 {
				t.Fatalf("GET: %d %s", code, body)
			}
			if got[0].Lat == nil || got[0].Long == nil || *got[0].Lat != tc.lat || *got[0].Long != tc.long || got[0].AddressID != tc.building {
				t.Fatalf("GET: %s, want lat %v long %v address_id %q", body, tc.lat, tc.long, tc.building)
			}
		})
	}
	var before int
	d.state.Read(func(m *merge.State) { before = len(m.Reports("")) })
	for _, tc := range []struct {
		name  string
		form  url.Values
		field string
	}{
		{"nowhere", url.Values{}, "address_string"},
		{"blank address, nothing else", url.Values{"address_string": {" "}}, "address_string"},
		{"lat without long", url.Values{"lat": {"31.2"}}, "long"},
		{"long without lat", url.Values{"long": {"121.4"}}, "lat"},
		{"lat not a number", url.Values{"lat": {"north"}, "long": {"121.4"}}, "lat"},
		{"lat out of range", url.Values{"lat": {"91"}, "long": {"121.4"}}, "lat"},
		{"long out of range", url.Values{"lat": {"31"}, "long": {"-180.5"}}, "long"},
		{"lat NaN", url.Values{"lat": {"NaN"}, "long": {"1"}}, "lat"},
		{"long infinite", url.Values{"lat": {"1"}, "long": {"+Inf"}}, "long"},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			tc.form.Set("jurisdiction_id", "s1")
			tc.form.Set("service_code", "facilities")
			tc.form.Set("description", "x")
			code, body := d.call(t, "op", "POST", "/open311/v2/requests.json", formType, tc.form.Encode())
			var errs []error311
			if err := json.Unmarshal([]byte(body), &errs); code != 400 || err != nil || len(errs) != 1 ||
				errs[0].Code != 400 || !strings.HasPrefix(errs[0].Description, tc.field+" ") && !strings.HasPrefix(errs[0].Description, tc.field+":") {
				t.Fatalf("%d %s, want 400 with a GeoReport error naming %s", code, body, tc.field)
			}
		})
	}
	var after int
	d.state.Read(func(m *merge.State) { after = len(m.Reports("")) })
	if after != before {
		t.Fatalf("%d reports after refused POSTs, want %d: bad input stored something", after, before)
	}
}

// The GeoReport v2 spec's example documents, as a client reads them.
type (
	specServices struct {
		XMLName  xml.Name `xml:"services"`
		Services []struct {
			Code        string `xml:"service_code"`
			Name        string `xml:"service_name"`
			Description string `xml:"description"`
			Metadata    string `xml:"metadata"`
			Type        string `xml:"type"`
			Keywords    string `xml:"keywords"`
			Group       string `xml:"group"`
		} `xml:"service"`
	}
	specRequest struct {
		ID          string `xml:"service_request_id"`
		Status      string `xml:"status"`
		StatusNotes string `xml:"status_notes"`
		ServiceName string `xml:"service_name"`
		ServiceCode string `xml:"service_code"`
		Description string `xml:"description"`
		Agency      string `xml:"agency_responsible"`
		Notice      string `xml:"service_notice"`
		Requested   string `xml:"requested_datetime"`
		Updated     string `xml:"updated_datetime"`
		Address     string `xml:"address"`
		AddressID   string `xml:"address_id"`
		Lat         string `xml:"lat"`
		Long        string `xml:"long"`
	}
	specRequests struct {
		XMLName  xml.Name      `xml:"service_requests"`
		Requests []specRequest `xml:"request"`
	}
	specErrors struct {
		XMLName xml.Name `xml:"errors"`
		Errors  []struct {
			Code        int    `xml:"code"`
			Description string `xml:"description"`
		} `xml:"error"`
	}
	specDiscovery struct {
		XMLName    xml.Name `xml:"discovery"`
		Changeset  string   `xml:"changeset"`
		Contact    string   `xml:"contact"`
		KeyService string   `xml:"key_service"`
		Endpoints  []struct {
			Specification string   `xml:"specification"`
			URL           string   `xml:"url"`
			Changeset     string   `xml:"changeset"`
			Type          string   `xml:"type"`
			Formats       []string `xml:"formats>format"`
		} `xml:"endpoints>endpoint"`
	}
)

// elementNames lists every element of an XML document in order, so a
// test sees names the structs above would silently skip.
func elementNames(t *testing.T, doc string) []string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	var names []string
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return names
			}
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			names = append(names, se.Name.Local)
		}
	}
}

func mustXML(t *testing.T, what string, code int, wantCode int, body string, v any) {
	t.Helper()
	if code != wantCode {
		t.Fatalf("%s: %d %s, want %d", what, code, body, wantCode)
	}
	if !strings.HasPrefix(body, `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Fatalf("%s: no XML declaration: %s", what, body)
	}
	if err := xml.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, body)
	}
}

func TestOpen311XML(t *testing.T) {
	d := newDash(t, xiangyang)
	var svcs specServices
	code, body := d.call(t, "", "GET", "/open311/v2/services.xml", "", "")
	mustXML(t, "services.xml", code, 200, body, &svcs)
	if len(svcs.Services) != len(event.Categories) || svcs.Services[0].Code != "fire_safety" || svcs.Services[0].Name != "消防安全" ||
		svcs.Services[0].Metadata != "false" || svcs.Services[0].Type != "realtime" {
		t.Fatalf("services.xml: %+v", svcs)
	}
	if got := strings.Join(elementNames(t, body)[:8], " "); got != "services service service_code service_name description metadata type keywords" {
		t.Fatalf("services.xml elements: %s", got)
	}

	open := d.edgeFact(t, "k1", 1, 0, &event.Report{Category: "elevator", Title: "电梯异响", Building: "B2", Unit: "1-301", Resident: "R1"})
	if code, body := d.call(t, "op", "PATCH", "/api/v1/reports/"+open.ID(), "", `{"status":"accepted","assignee":"王师傅"}`); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	// POST requests.xml: form in, XML out.
	form := url.Values{"jurisdiction_id": {"s1"}, "service_code": {"facilities"}, "description": {"路灯 & 井盖 <坏了>"},
		"lat": {"31.2304"}, "long": {"121.4737"}}.Encode()
	var posted specRequests
	code, body = d.call(t, "op", "POST", "/open311/v2/requests.xml", formType, form)
	mustXML(t, "POST requests.xml", code, 201, body, &posted)
	if len(posted.Requests) != 1 || posted.Requests[0].ID == "" || !strings.HasSuffix(posted.Requests[0].Notice, posted.Requests[0].ID+".xml") {
		t.Fatalf("POST requests.xml: %s", body)
	}
	filed := posted.Requests[0].ID

	var list specRequests
	code, body = d.call(t, "", "GET", "/open311/v2/requests.xml?jurisdiction_id=s1", "", "")
	mustXML(t, "requests.xml", code, 200, body, &list)
	if len(list.Requests) != 2 || list.Requests[0].ID != filed || list.Requests[1].ID != open.ID() {
		t.Fatalf("requests.xml: %s, want %s then %s", body, filed, open.ID())
	}
	got := list.Requests[0]
	if got.Lat != "31.2304" || got.Long != "121.4737" || got.Description != "路灯 & 井盖 <坏了>" || got.Status != "open" ||
		got.Agency != "向阳社区居委会" || got.ServiceCode != "facilities" {
		t.Fatalf("filed request in XML: %+v", got)
	}
	if _, err := time.Parse(time.RFC3339, got.Requested); err != nil {
		t.Fatalf("requested_datetime %q: %v", got.Requested, err)
	}
	if got := list.Requests[1]; got.Agency != "向阳社区居委会" || got.Address != "B2 1-301" || got.AddressID != "B2" || got.Lat != "" {
		t.Fatalf("kiosk report in XML: %+v", got)
	}
	if strings.Contains(body, "王师傅") || strings.Contains(body, "R1") {
		t.Fatalf("requests.xml names a person (assignee or resident): %s", body)
	}
	names := elementNames(t, body)
	for _, want := range []string{"service_requests", "request", "service_request_id", "status", "service_name", "service_code",
		"description", "agency_responsible", "requested_datetime", "updated_datetime", "address", "address_id", "lat", "long"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("requests.xml has no <%s>: %v", want, names)
		}
	}

	var one specRequests
	code, body = d.call(t, "", "GET", "/open311/v2/requests/"+open.ID()+".xml", "", "")
	mustXML(t, "requests/{id}.xml", code, 200, body, &one)
	if len(one.Requests) != 1 || one.Requests[0].ID != open.ID() || one.Requests[0].ServiceCode != "elevator" {
		t.Fatalf("requests/{id}.xml: %s", body)
	}

	// Errors in XML: an unknown request, a bad POST, no token.
	for _, tc := range []struct {
		what, token, method, path, body string
		code                            int
		desc                            string
	}{
		{"unknown request", "", "GET", "/open311/v2/requests/k9.9.xml", "", 404, "k9.9"},
		{"bad status filter", "", "GET", "/open311/v2/requests.xml?status=maybe", "", 400, "status must"},
		{"unknown service code", "op", "POST", "/open311/v2/requests.xml",
			url.Values{"jurisdiction_id": {"s1"}, "service_code": {"parking"}, "description": {"x"}, "address_id": {"B1"}}.Encode(), 400, "service_code \"parking\""},
		{"no token", "", "POST", "/open311/v2/requests.xml", form, 401, "Authorization"},
		{"service definition", "", "GET", "/open311/v2/services/noise.xml", "", 404, "service_code:"},
	} {
		var errs specErrors
		code, body := d.call(t, tc.token, tc.method, tc.path, formType, tc.body)
		mustXML(t, tc.what, code, tc.code, body, &errs)
		if len(errs.Errors) != 1 || errs.Errors[0].Code != tc.code || !strings.Contains(errs.Errors[0].Description, tc.desc) {
			t.Errorf("%s: %s, want <errors><error><code>%d</code> mentioning %q", tc.what, body, tc.code, tc.desc)
		}
		if got := strings.Join(elementNames(t, body), " "); got != "errors error code description" {
			t.Errorf("%s: elements %s", tc.what, got)
		}
	}
}

func TestOpen311Discovery(t *testing.T) {
	d := newDash(t, xiangyang)
	check := func(what, contact, key string, eps []struct {
		spec, url, typ string
		formats        []string
	}, changeset string) {
		t.Helper()
		if _, err := time.Parse(time.RFC3339, changeset); err != nil {
			t.Errorf("%s changeset %q: %v", what, changeset, err)
		}
		if !strings.Contains(contact, "向阳社区居委会") || !strings.Contains(key, "api_key") {
			t.Errorf("%s: contact %q, key_service %q", what, contact, key)
		}
		if len(eps) != 1 || eps[0].spec != "http://wiki.open311.org/GeoReport_v2" || eps[0].url != d.srv.URL+"/open311/v2" ||
			eps[0].typ != "production" || strings.Join(eps[0].formats, ",") != "application/json,text/xml" {
			t.Errorf("%s endpoints: %+v", what, eps)
		}
	}
	type ep = struct {
		spec, url, typ string
		formats        []string
	}

	code, body := d.call(t, "", "GET", "/open311/discovery.json", "", "")
	var js struct {
		Changeset  string `json:"changeset"`
		Contact    string `json:"contact"`
		KeyService string `json:"key_service"`
		Endpoints  []struct {
			Specification string   `json:"specification"`
			URL           string   `json:"url"`
			Changeset     string   `json:"changeset"`
			Type          string   `json:"type"`
			Formats       []string `json:"formats"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(body), &js); code != 200 || err != nil {
		t.Fatalf("discovery.json: %d %s", code, body)
	}
	var eps []ep
	for _, e := range js.Endpoints {
		eps = append(eps, ep{e.Specification, e.URL, e.Type, e.Formats})
	}
	check("discovery.json", js.Contact, js.KeyService, eps, js.Changeset)

	var x specDiscovery
	code, body = d.call(t, "", "GET", "/open311/discovery.xml", "", "")
	mustXML(t, "discovery.xml", code, 200, body, &x)
	eps = nil
	for _, e := range x.Endpoints {
		eps = append(eps, ep{e.Specification, e.URL, e.Type, e.Formats})
	}
	check("discovery.xml", x.Contact, x.KeyService, eps, x.Changeset)
	want := "discovery changeset contact key_service endpoints endpoint specification url changeset type formats format format"
	if got := strings.Join(elementNames(t, body), " "); got != want {
		t.Errorf("discovery.xml elements:\n got %s\nwant %s", got, want)
	}
}

// A jurisdiction_id that names no site of the hub is refused with a
// GeoReport error, on every endpoint that takes one.
func TestOpen311UnknownJurisdiction(t *testing.T) {
	d := newDash(t, xiangyang)
	rep := d.edgeFact(t, "k1", 1, 0, &event.Report{Category: "noise", Title: "噪音", Building: "B1"})
	post := url.Values{"jurisdiction_id": {"nowhere"}, "service_code": {"noise"}, "description": {"x"}, "address_id": {"B1"}}.Encode()
	for _, f := range []string{"json", "xml"} {
		for _, tc := range []struct{ method, path, body string }{
			{"GET", "/open311/v2/services." + f + "?jurisdiction_id=nowhere", ""},
			{"GET", "/open311/v2/requests." + f + "?jurisdiction_id=nowhere", ""},
			{"GET", "/open311/v2/requests/" + rep.ID() + "." + f + "?jurisdiction_id=nowhere", ""},
			{"POST", "/open311/v2/requests." + f, post},
		} {
			code, body := d.call(t, "op", tc.method, tc.path, formType, tc.body)
			var desc string
			if f == "json" {
				var errs []error311
				if err := json.Unmarshal([]byte(body), &errs); err != nil || len(errs) != 1 || errs[0].Code != 404 {
					t.Errorf("%s %s: %d %s, want [{\"code\":404,…}]", tc.method, tc.path, code, body)
					continue
				}
				desc = errs[0].Description
			} else {
				var errs specErrors
				mustXML(t, tc.path, code, 404, body, &errs)
				if len(errs.Errors) != 1 || errs.Errors[0].Code != 404 {
					t.Errorf("%s %s: %s", tc.method, tc.path, body)
					continue
				}
				desc = errs.Errors[0].Description
			}
			if code != 404 || !strings.HasPrefix(desc, "jurisdiction_id") || !strings.Contains(desc, "nowhere") {
				t.Errorf("%s %s: %d %q, want 404 naming jurisdiction_id", tc.method, tc.path, code, desc)
			}
		}
	}
	var n int
	d.state.Read(func(m *merge.State) { n = len(m.Reports("")) })
	if n != 1 {
		t.Fatalf("%d reports, want 1: the refused POST stored something", n)
	}
	// Known sites and the default still answer; an empty jurisdiction_id
	// files at the hub's only site.
	for _, path := range []string{"/open311/v2/services.json?jurisdiction_id=s1", "/open311/v2/requests.json?jurisdiction_id=s1",
		"/open311/v2/requests.xml", "/open311/v2/requests/" + rep.ID() + ".json?jurisdiction_id=s1"} {
		if code, body := d.call(t, "", "GET", path, "", ""); code != 200 {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	noSite := url.Values{"service_code": {"noise"}, "description": {"x"}, "address_id": {"B1"}}.Encode()
	code, body := d.call(t, "op", "POST", "/open311/v2/requests.json", formType, noSite)
	if code != 201 || !strings.Contains(body, "service_request_id") {
		t.Fatalf("POST without jurisdiction_id at a one-site hub: %d %s", code, body)
	}
	// An operator of s2 defaults to s2, which this hub does not know.
	if code, body := d.call(t, "s2", "POST", "/open311/v2/requests.json", formType, noSite); code != 404 || !strings.Contains(body, `jurisdiction_id \"s2\"`) {
		t.Fatalf("POST defaulting to an unknown site: %d %s, want 404 naming jurisdiction_id", code, body)
	}
}
