package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// Open311 GeoReport v2 over the merged reports, so civic tools can read
// and file neighbourhood reports (邻里举报):
//
//	GET  /open311/v2/services.json              open to all: one service per report category
//	GET  /open311/v2/requests.json              reports as service requests (no personal data)
//	GET  /open311/v2/requests/{id}.json         one of them
//	POST /open311/v2/requests.json              file one: needs an operator's token (Bearer or api_key)
//
// jurisdiction_id is the site. Statuses map submitted/accepted/in_progress
// to open and resolved/rejected to closed. GeoReport v2 has no idempotency
// key, so a POST may carry client_id (or attribute[client_id]): the same
// client id at the same site always names the same request, and a retry
// files nothing new (answer 200 instead of 201).
func (a *API) mountOpen311(mux *http.ServeMux) {
	mux.HandleFunc("GET /open311/v2/services.json", a.wrap311(a.services311))
	mux.HandleFunc("GET /open311/v2/requests.json", a.wrap311(a.requests311))
	mux.HandleFunc("GET /open311/v2/requests/{file}", a.wrap311(a.request311))
	mux.HandleFunc("POST /open311/v2/requests.json", a.wrap311(a.requireAuth(a.post311)))
}

// wrap311 answers errors the GeoReport way: [{"code","description"}].
func (a *API) wrap311(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var he *httpx.Error
		if !errors.As(err, &he) {
			a.Logger.Error("open311", "err", err)
			he = &httpx.Error{Status: http.StatusInternalServerError, Msg: "internal error"}
		}
		desc := he.Msg
		if he.Field != "" && !strings.HasPrefix(desc, he.Field) {
			desc = he.Field + ": " + desc
		}
		httpx.WriteJSON(w, he.Status, []map[string]any{{"code": he.Status, "description": desc}})
	}
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
	Code        string `json:"service_code"`
	Name        string `json:"service_name"`
	Description string `json:"description"`
	Metadata    bool   `json:"metadata"`
	Type        string `json:"type"`
	Keywords    string `json:"keywords"`
	Group       string `json:"group"`
}

func (a *API) services311(w http.ResponseWriter, r *http.Request) error {
	locale := r.URL.Query().Get("locale")
	out := []service311{}
	for _, c := range event.Categories {
		n := serviceNames[c]
		out = append(out, service311{Code: c, Name: serviceName(c, locale), Description: n[0] + " / " + n[1],
			Type: "realtime", Keywords: c, Group: "邻里举报 neighbourhood reports"})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

type request311 struct {
	ID           string    `json:"service_request_id"`
	Status       string    `json:"status"` // open or closed
	StatusNotes  string    `json:"status_notes,omitempty"`
	ServiceName  string    `json:"service_name"`
	ServiceCode  string    `json:"service_code"`
	Description  string    `json:"description"`
	Agency       string    `json:"agency_responsible,omitempty"`
	Requested    time.Time `json:"requested_datetime"`
	Updated      time.Time `json:"updated_datetime"`
	Address      string    `json:"address"`
	AddressID    string    `json:"address_id"`
	Votes        uint32    `json:"votes"`
	Jurisdiction string    `json:"jurisdiction_id"`
}

// status311 maps the report lifecycle onto Open311's two states.
func status311(s string) string {
	if s == event.ReportResolved || s == event.ReportRejected {
		return "closed"
	}
	return "open"
}

func toRequest311(rep merge.Report, locale string) request311 {
	desc := rep.Title
	if rep.Description != "" {
		desc += "\n" + rep.Description
	}
	addr := rep.Building
	if rep.Unit != "" {
		addr += " " + rep.Unit
	}
	notes := rep.Note
	if rep.MergedInto != "" {
		notes = strings.TrimSpace("duplicate of " + rep.MergedInto + ". " + notes)
	}
	return request311{ID: rep.ID, Status: status311(rep.Status), StatusNotes: notes, ServiceName: serviceName(rep.Category, locale),
		ServiceCode: rep.Category, Description: desc, Agency: rep.Assignee, Requested: rep.Created.Time().UTC(),
		Updated: rep.Updated.Time().UTC(), Address: addr, AddressID: rep.Building, Votes: rep.Votes, Jurisdiction: rep.Site}
}

func (a *API) requests311(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
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
	out := []request311{}
	a.State.Read(func(m *merge.State) {
		for _, s := range sites {
			for _, rep := range m.Reports(s) {
				req := toRequest311(rep, q.Get("locale"))
				if (len(ids) > 0 && !slices.Contains(ids, req.ID)) || (len(codes) > 0 && !slices.Contains(codes, req.ServiceCode)) ||
					(status != "" && req.Status != status) || (!start.IsZero() && req.Requested.Before(start)) ||
					(!end.IsZero() && req.Requested.After(end)) {
					continue
				}
				out = append(out, req)
			}
		}
	})
	slices.SortFunc(out, func(x, y request311) int { return y.Requested.Compare(x.Requested) })
	if len(out) > 1000 { // GeoReport's customary cap
		out = out[:1000]
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) request311(w http.ResponseWriter, r *http.Request) error {
	id, ok := strings.CutSuffix(r.PathValue("file"), ".json")
	if !ok {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "only .json is served"}
	}
	var rep merge.Report
	var err error
	a.State.Read(func(m *merge.State) { rep, err = m.Report(id) })
	if err != nil {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "no service request " + id}
	}
	if _, err := a.Scope(r, rep.Site); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, []request311{toRequest311(rep, r.URL.Query().Get("locale"))})
	return nil
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
	site := f["jurisdiction_id"]
	if site == "" {
		if len(p.Sites) != 1 {
			return httpx.BadRequest("jurisdiction_id", "jurisdiction_id (the site) is required")
		}
		site = p.Sites[0]
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
	building := firstNonEmpty(f["attribute[building]"], f["address_id"])
	if building == "" {
		building = strings.Fields(f["address_string"] + " ")[0]
	}
	unit := f["attribute[unit]"]
	if unit == "" && building != "" {
		if rest := strings.Fields(f["address_string"]); len(rest) > 1 && rest[0] == building {
			unit = rest[1]
		}
	}
	client := firstNonEmpty(f["client_id"], f["attribute[client_id]"])
	body := &event.ReportFile{Site: site, ClientID: client, Who: p.Name,
		Report: event.Report{Category: f["service_code"], Title: title, Description: desc, Building: building, Unit: unit}}
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
			id = evs[0].ID()
		}
	}
	httpx.WriteJSON(w, code, []map[string]string{{"service_request_id": id,
		"service_notice": "已受理 received; follow it on the community kiosk or at /open311/v2/requests/" + id + ".json"}})
	return nil
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
