package api

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// Open311 GeoReport v2 over the merged reports, so civic tools can read
// and file neighbourhood reports (邻里举报). Every endpoint answers in the
// format its name ends with, .json or .xml:
//
//	GET  /open311/discovery.{json,xml}          what this endpoint is and how to get a key
//	GET  /open311/v2/services.{json,xml}        open to all: one service per report category
//	GET  /open311/v2/requests.{json,xml}        reports as service requests (no personal data)
//	GET  /open311/v2/requests/{id}.{json,xml}   one of them
//	POST /open311/v2/requests.{json,xml}        file one: needs an operator's token (Bearer or api_key)
//
// jurisdiction_id is the site: one this hub knows, or empty for the
// default (every site in scope when reading; the only one when filing).
// Statuses map submitted/accepted/in_progress to open and
// resolved/rejected to closed. GeoReport v2 has no idempotency key, so a
// POST may carry client_id (or attribute[client_id]): the same client id
// at the same site always names the same request, and a retry files
// nothing new (answer 200 instead of 201).
func (a *API) mountOpen311(mux *http.ServeMux) {
	for _, f := range []string{"json", "xml"} {
		mux.HandleFunc("GET /open311/discovery."+f, a.wrap311(a.discovery311))
		mux.HandleFunc("GET /open311/v2/services."+f, a.wrap311(a.services311))
		mux.HandleFunc("GET /open311/v2/requests."+f, a.wrap311(a.requests311))
		mux.HandleFunc("POST /open311/v2/requests."+f, a.wrap311(a.requireAuth(a.post311)))
	}
	mux.HandleFunc("GET /open311/v2/services/{file}", a.wrap311(a.serviceDefinition311))
	mux.HandleFunc("GET /open311/v2/requests/{file}", a.wrap311(a.request311))
}

// xml311 reports whether r asks for GeoReport's XML form.
func xml311(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, ".xml") }

// write311 answers v as JSON, or as XML inside the element root (the
// spec's list documents: <services>, <service_requests>, <errors>) with
// each item as an element named item.
func write311[T any](w http.ResponseWriter, r *http.Request, status int, root, item string, v []T) {
	if !xml311(r) {
		httpx.WriteJSON(w, status, v)
		return
	}
	writeXML(w, status, xmlList[T]{root: root, item: item, items: v})
}

// xmlList is a list document: <root><item>…</item>…</root>.
type xmlList[T any] struct {
	root, item string
	items      []T
}

func (l xmlList[T]) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	start := xml.StartElement{Name: xml.Name{Local: l.root}}
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	for _, it := range l.items {
		if err := e.EncodeElement(it, xml.StartElement{Name: xml.Name{Local: l.item}}); err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

// writeXML writes v as an XML document with status.
func writeXML(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return // the client went away; nobody is left to tell
	}
	if err := xml.NewEncoder(w).Encode(v); err != nil {
		return
	}
}

// error311 is one GeoReport error.
type error311 struct {
	Code        int    `json:"code" xml:"code"`
	Description string `json:"description" xml:"description"`
}

// wrap311 answers errors the GeoReport way: [{"code","description"}], or
// <errors><error><code/><description/></error></errors>.
func (a *API) wrap311(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var he *httpx.Error
		if !errors.As(httpError(err), &he) {
			a.Logger.Error("open311", "err", err)
			he = &httpx.Error{Status: http.StatusInternalServerError, Msg: "internal error"}
		}
		desc := he.Msg
		if he.Field != "" && !strings.HasPrefix(desc, he.Field) {
			desc = he.Field + ": " + desc
		}
		write311(w, r, he.Status, "errors", "error", []error311{{Code: he.Status, Description: desc}})
	}
}

// jurisdiction311 refuses a jurisdiction_id that names no site of this
// hub; empty is the default.
func (a *API) jurisdiction311(id string) error {
	if id == "" || a.knownSites()[id] {
		return nil
	}
	return &httpx.Error{Status: http.StatusNotFound, Field: "jurisdiction_id",
		Msg: fmt.Sprintf("jurisdiction_id %q is not a site of this hub", id)}
}

// agency311 names the organisation answering site's reports, from its
// site plan: never an operator or an assignee, who are people.
func (a *API) agency311(site string) string {
	p, ok := a.Plans[site]
	if !ok {
		return ""
	}
	return firstNonEmpty(p.Agency, p.Name)
}

// discoveryChangeset is when this GeoReport endpoint last changed (the
// .xml forms, discovery, lat/long, agency_responsible).
var discoveryChangeset = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

// discovery311 is GeoReport's service discovery document.
type discovery311 struct {
	XMLName    xml.Name      `json:"-" xml:"discovery"`
	Changeset  time.Time     `json:"changeset" xml:"changeset"`
	Contact    string        `json:"contact" xml:"contact"`
	KeyService string        `json:"key_service" xml:"key_service"`
	Endpoints  []endpoint311 `json:"endpoints" xml:"endpoints>endpoint"`
}

type endpoint311 struct {
	Specification string    `json:"specification" xml:"specification"`
	URL           string    `json:"url" xml:"url"`
	Changeset     time.Time `json:"changeset" xml:"changeset"`
	Type          string    `json:"type" xml:"type"`
	Formats       []string  `json:"formats" xml:"formats>format"`
}

func (a *API) discovery311(w http.ResponseWriter, r *http.Request) error {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	var agencies []string
	for site := range a.Plans {
		if n := a.agency311(site); n != "" {
			agencies = append(agencies, n)
		}
	}
	slices.Sort(agencies)
	contact := "The operators of this Linli hub"
	if len(agencies) > 0 {
		contact = strings.Join(agencies, ", ") + " (through the operators of this Linli hub)"
	}
	d := discovery311{Changeset: discoveryChangeset, Contact: contact,
		KeyService: "Reading needs no key. To file requests, ask an operator of this hub for an API token " +
			"(dashboard: 账户 Account, or POST /api/v1/tokens) and send it as api_key or Authorization: Bearer.",
		Endpoints: []endpoint311{{Specification: "http://wiki.open311.org/GeoReport_v2",
			URL: scheme + "://" + r.Host + "/open311/v2", Changeset: discoveryChangeset, Type: "production",
			Formats: []string{"application/json", "text/xml"}}}}
	if xml311(r) {
		writeXML(w, http.StatusOK, d)
	} else {
		httpx.WriteJSON(w, http.StatusOK, d)
	}
	return nil
}

// serviceNames names the report categories for Open311 clients.
var serviceNames = map[string][2]string{ // zh-CN, en
	"fire_safety":   {"消防安全", "Fire safety"},
	"public_safety": {"公共安全", "Public safety"},
	"facilities":    {"设施维修", "Facilities and repairs"},
	"sanitation":    {"环境卫生", "Sanitation"},
	"noise":         {"噪音扰民", "Noise"},
	"elevator":      {"电梯", "Elevator"},
	"other":         {"其他", "Other"},
}

func serviceName(code, locale string) string {
	n, ok := serviceNames[code]
	if !ok {
		return code
	}
	if strings.HasPrefix(locale, "en") {
		return n[1]
	}
	return n[0]
}

type service311 struct {
	Code        string `json:"service_code" xml:"service_code"`
	Name        string `json:"service_name" xml:"service_name"`
	Description string `json:"description" xml:"description"`
	Metadata    bool   `json:"metadata" xml:"metadata"`
	Type        string `json:"type" xml:"type"`
	Keywords    string `json:"keywords" xml:"keywords"`
	Group       string `json:"group" xml:"group"`
}

func (a *API) services311(w http.ResponseWriter, r *http.Request) error {
	if err := a.jurisdiction311(r.URL.Query().Get("jurisdiction_id")); err != nil {
		return err
	}
	locale := r.URL.Query().Get("locale")
	out := []service311{}
	for _, c := range event.Categories {
		n := serviceNames[c]
		out = append(out, service311{Code: c, Name: serviceName(c, locale), Description: n[0] + " / " + n[1],
			Type: "realtime", Keywords: c, Group: "邻里举报 neighbourhood reports"})
	}
	write311(w, r, http.StatusOK, "services", "service", out)
	return nil
}

// serviceDefinition311 answers GeoReport's service definition request:
// every service says metadata false (its attributes are optional and
// free-form), so there is none to give.
func (a *API) serviceDefinition311(w http.ResponseWriter, r *http.Request) error {
	file := r.PathValue("file")
	code := strings.TrimSuffix(strings.TrimSuffix(file, ".json"), ".xml")
	if code == file {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "only .json and .xml are served"}
	}
	if err := a.jurisdiction311(r.URL.Query().Get("jurisdiction_id")); err != nil {
		return err
	}
	if !slices.Contains(event.Categories, code) {
		return &httpx.Error{Status: http.StatusNotFound, Field: "service_code",
			Msg: fmt.Sprintf("service_code %q is not one of %v", code, event.Categories)}
	}
	return &httpx.Error{Status: http.StatusNotFound, Field: "service_code",
		Msg: "service " + code + " has no service definition (metadata is false)"}
}

type request311 struct {
	ID           string    `json:"service_request_id" xml:"service_request_id"`
	Status       string    `json:"status" xml:"status"` // open or closed
	StatusNotes  string    `json:"status_notes,omitempty" xml:"status_notes,omitempty"`
	ServiceName  string    `json:"service_name" xml:"service_name"`
	ServiceCode  string    `json:"service_code" xml:"service_code"`
	Description  string    `json:"description" xml:"description"`
	Agency       string    `json:"agency_responsible,omitempty" xml:"agency_responsible,omitempty"`
	Requested    time.Time `json:"requested_datetime" xml:"requested_datetime"`
	Updated      time.Time `json:"updated_datetime" xml:"updated_datetime"`
	Address      string    `json:"address" xml:"address"`
	AddressID    string    `json:"address_id" xml:"address_id"`
	Lat          *float64  `json:"lat,omitempty" xml:"lat,omitempty"`
	Long         *float64  `json:"long,omitempty" xml:"long,omitempty"`
	Votes        uint32    `json:"votes" xml:"votes"`
	Jurisdiction string    `json:"jurisdiction_id" xml:"jurisdiction_id"`
}

// status311 maps the report lifecycle onto Open311's two states.
func status311(s string) string {
	if s == event.ReportResolved || s == event.ReportRejected {
		return "closed"
	}
	return "open"
}

func (a *API) toRequest311(rep merge.Report, locale string) request311 {
	desc := rep.Title
	if rep.Description != "" {
		desc += "\n" + rep.Description
	}
	addr := rep.Building
	if rep.Unit != "" {
		addr = strings.TrimSpace(addr + " " + rep.Unit)
	}
	notes := rep.Note
	if rep.MergedInto != "" {
		notes = strings.TrimSpace("duplicate of " + rep.MergedInto + ". " + notes)
	}
	req := request311{ID: rep.ID, Status: status311(rep.Status), StatusNotes: notes, ServiceName: serviceName(rep.Category, locale),
		ServiceCode: rep.Category, Description: desc, Agency: a.agency311(rep.Site), Requested: rep.Created.Time().UTC(),
		Updated: rep.Updated.Time().UTC(), Address: addr, AddressID: rep.Building, Votes: rep.Votes, Jurisdiction: rep.Site}
	if l := rep.Location; l != nil {
		req.Lat, req.Long = &l.Lat, &l.Long
	}
	return req
}

func (a *API) requests311(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := a.jurisdiction311(q.Get("jurisdiction_id")); err != nil {
		return err
	}
	sites, err := a.Scope(r, q.Get("jurisdiction_id"))
	if err != nil {
		return err
	}
	var ids []string
	if v := q.Get("service_request_id"); v != "" {
		ids = strings.Split(v, ",")
	}
	var codes []string
	if v := q.Get("service_code"); v != "" {
		codes = strings.Split(v, ",")
	}
	status := q.Get("status")
	if status != "" && status != "open" && status != "closed" {
		return httpx.BadRequest("status", "status must be open or closed")
	}
	var start, end time.Time
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"start_date", &start}, {"end_date", &end}} {
		if v := q.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return httpx.BadRequest(f.name, "%s must be a W3C (RFC 3339) date-time", f.name)
			}
			*f.dst = t
		}
	}
	var reps []merge.Report
	a.State.Read(func(m *merge.State) {
		for _, s := range sites {
			reps = append(reps, m.Reports(s)...)
		}
	})
	out := []request311{}
	for _, rep := range reps {
		req := a.toRequest311(rep, q.Get("locale"))
		if (len(ids) > 0 && !slices.Contains(ids, req.ID)) || (len(codes) > 0 && !slices.Contains(codes, req.ServiceCode)) ||
			(status != "" && req.Status != status) || (!start.IsZero() && req.Requested.Before(start)) ||
			(!end.IsZero() && req.Requested.After(end)) {
			continue
		}
		out = append(out, req)
	}
	slices.SortFunc(out, func(x, y request311) int { return y.Requested.Compare(x.Requested) })
	if len(out) > 1000 { // GeoReport's customary cap
		out = out[:1000]
	}
	write311(w, r, http.StatusOK, "service_requests", "request", out)
	return nil
}

func (a *API) request311(w http.ResponseWriter, r *http.Request) error {
	file := r.PathValue("file")
	id := strings.TrimSuffix(strings.TrimSuffix(file, ".json"), ".xml")
	if id == file {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "only .json and .xml are served"}
	}
	if err := a.jurisdiction311(r.URL.Query().Get("jurisdiction_id")); err != nil {
		return err
	}
	var rep merge.Report
	var err error
	a.State.Read(func(m *merge.State) { rep, err = m.Report(id) })
	if err != nil {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "no service request " + id}
	}
	if j := r.URL.Query().Get("jurisdiction_id"); j != "" && j != rep.Site {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "no service request " + id + " in jurisdiction " + j}
	}
	if _, err := a.Scope(r, rep.Site); err != nil {
		// Out of scope answers as a missing id does, not telling the
		// caller that the request exists.
		return &httpx.Error{Status: http.StatusNotFound, Msg: "no service request " + id}
	}
	write311(w, r, http.StatusOK, "service_requests", "request", []request311{a.toRequest311(rep, r.URL.Query().Get("locale"))})
	return nil
}

// posted311 answers a POST: the new (or retried) request's id.
type posted311 struct {
	ID     string `json:"service_request_id" xml:"service_request_id"`
	Notice string `json:"service_notice" xml:"service_notice"`
}

// post311 files a report from an Open311 client, as form fields
// (GeoReport's own encoding) or a JSON object of the same names.
func (a *API) post311(w http.ResponseWriter, r *http.Request) error {
	f, err := form311(w, r)
	if err != nil {
		return err
	}
	p, err := a.Caller(r)
	if err != nil {
		return err
	}
	site, err := a.site311(p, f["jurisdiction_id"])
	if err != nil {
		return err
	}
	if err := a.CheckSite(r, site); err != nil {
		return err
	}
	desc := strings.TrimSpace(f["description"])
	if desc == "" {
		return httpx.BadRequest("description", "description is required")
	}
	title := strings.TrimSpace(f["attribute[title]"])
	if title == "" {
		title = strings.TrimSpace(strings.SplitN(desc, "\n", 2)[0])
		for utf8.RuneCountInString(title) > 60 {
			title = string([]rune(title)[:59]) + "…"
		}
	}
	loc, err := location311(f)
	if err != nil {
		return err
	}
	// address_string is "BUILDING [UNIT …]"; it may be absent, or
	// blank, when the client gives a location instead.
	words := strings.Fields(f["address_string"])
	building := firstNonEmpty(f["attribute[building]"], f["address_id"])
	if building == "" && len(words) > 0 {
		building = words[0]
	}
	unit := f["attribute[unit]"]
	if unit == "" && len(words) > 1 && words[0] == building {
		unit = words[1]
	}
	if building == "" && loc == nil {
		return httpx.BadRequest("address_string",
			`say where: address_string ("B3 2-101"), address_id or attribute[building], or lat and long`)
	}
	client := firstNonEmpty(f["client_id"], f["attribute[client_id]"])
	body := &event.ReportFile{Site: site, ClientID: client, Who: p.Name,
		Report: event.Report{Category: f["service_code"], Title: title, Description: desc, Building: building, Unit: unit,
			Location: loc}}
	if body.Report.Description == title {
		body.Report.Description = ""
	}
	if err := body.Validate(); err != nil {
		var fe *event.FieldError
		if errors.As(err, &fe) && fe.Field == "category" {
			return httpx.BadRequest("service_code", "service_code %q is not one of %v", f["service_code"], event.Categories)
		}
		return httpx.FromValidation(err)
	}
	code, id := http.StatusCreated, ""
	if client != "" {
		id = event.ClientReportID(site, client)
		var exists bool
		a.State.Read(func(m *merge.State) { _, err := m.Report(id); exists = err == nil })
		if exists {
			code = http.StatusOK // a retry: the same request, nothing new filed
		}
	}
	if code == http.StatusCreated {
		evs, err := a.State.Record(body)
		if err != nil {
			return a.recordError(err)
		}
		if id == "" {
			if len(evs) == 0 {
				return errors.New("open311: recording a report gave no event")
			}
			id = evs[0].ID()
		}
	}
	ext := ".json"
	if xml311(r) {
		ext = ".xml"
	}
	write311(w, r, code, "service_requests", "request", []posted311{{ID: id,
		Notice: "已受理 received; follow it on the community kiosk or at /open311/v2/requests/" + id + ext}})
	return nil
}

// site311 resolves a POST's jurisdiction_id: a site of this hub, or
// when empty the caller's only site, else the hub's only site.
func (a *API) site311(p Principal, id string) (string, error) {
	if id != "" {
		return id, a.jurisdiction311(id)
	}
	if len(p.Sites) == 1 {
		return p.Sites[0], a.jurisdiction311(p.Sites[0])
	}
	if known := a.knownSites(); len(known) == 1 && len(p.Sites) == 0 {
		for s := range known {
			return s, nil
		}
	}
	return "", httpx.BadRequest("jurisdiction_id", "jurisdiction_id (the site) is required")
}

// location311 reads lat and long: both or neither, decimal degrees.
func location311(f map[string]string) (*event.GeoPoint, error) {
	latS, longS := strings.TrimSpace(f["lat"]), strings.TrimSpace(f["long"])
	if latS == "" && longS == "" {
		return nil, nil
	}
	var p event.GeoPoint
	for _, c := range []struct {
		name, v string
		dst     *float64
	}{{"lat", latS, &p.Lat}, {"long", longS, &p.Long}} {
		if c.v == "" {
			return nil, httpx.BadRequest(c.name, "%s is required with %s", c.name, map[string]string{"lat": "long", "long": "lat"}[c.name])
		}
		v, err := strconv.ParseFloat(c.v, 64)
		if err != nil {
			return nil, httpx.BadRequest(c.name, "%s must be a number of decimal degrees, not %q", c.name, c.v)
		}
		*c.dst = v
	}
	if err := p.Validate(); err != nil {
		return nil, httpx.FromValidation(err)
	}
	return &p, nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// form311 reads a POST's fields from a form or a JSON object (whose
// "attribute" object becomes attribute[...] fields).
func form311(w http.ResponseWriter, r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var raw map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, httpx.MaxBody)).Decode(&raw); err != nil {
			return nil, httpx.BadRequest("body", "bad JSON: %v", err)
		}
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				out[k] = v
			case float64: // lat and long as JSON numbers
				out[k] = strconv.FormatFloat(v, 'f', -1, 64)
			case map[string]any:
				for ak, av := range v {
					if s, ok := av.(string); ok {
						out["attribute["+ak+"]"] = s
					}
				}
			}
		}
		return out, nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, httpx.MaxBody)
	if err := r.ParseForm(); err != nil {
		return nil, httpx.BadRequest("body", "bad form: %v", err)
	}
	for k, v := range r.Form {
		if len(v) > 0 && k != "api_key" {
			out[k] = v[0]
		}
	}
	return out, nil
}
