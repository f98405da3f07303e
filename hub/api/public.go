package api

import (
	"html/template"
	"net/http"
	"strings"

	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// The public status page of a report, what a kiosk's QR code opens on a
// resident's phone: /r/{site}/{number}. It needs no login, so it shows
// only what any neighbour may see: the number, category, building,
// status and the public timeline (statuses and the office's replies). No
// title, description or unit (residents write those, and a unit is a
// home), no resident, no operator, no assignee.

func (a *API) mountPublic(mux *http.ServeMux) {
	mux.HandleFunc("GET /r/{site}/{number}", a.wrap(a.publicReport))
}

// publicStep is one line of the page's timeline.
type publicStep struct {
	When   string
	Status string
	Event  string
	Reply  string
}

// publicPage is everything the page shows.
type publicPage struct {
	Number, Site, Category, Building, Status string
	MergedInto                               string // the number of the report it follows
	Steps                                    []publicStep
}

// statusNames are the report statuses as residents read them.
var statusNames = map[string]string{
	event.ReportSubmitted:  "已提交 submitted",
	event.ReportAccepted:   "已受理 accepted",
	event.ReportInProgress: "处理中 in progress",
	event.ReportResolved:   "已解决 resolved",
	event.ReportRejected:   "未受理 rejected",
}

var stepNames = map[string]string{
	merge.HistoryCreated:    "提交 filed",
	merge.HistoryPatched:    "物业回复 the office",
	merge.HistoryReopened:   "居民反馈仍未解决 reopened: still not fixed",
	merge.HistoryMergedInto: "与相同问题合并 merged with the same problem",
}

func (a *API) publicReport(w http.ResponseWriter, r *http.Request) error {
	site, number := r.PathValue("site"), r.PathValue("number")
	if err := event.ValidID(site); err != nil {
		return httpx.BadRequest("site", "site %v", err)
	}
	if event.ValidNumber(number) != nil {
		if _, _, err := event.ParseID(number); err != nil {
			return httpx.BadRequest("number", "number: %q is neither a report number such as B1-0007 nor a report id", number)
		}
	}
	var v merge.ReportView
	found := false
	a.State.Read(func(m *merge.State) {
		var id string
		if id, found = m.ReportByNumber(site, number); found {
			v, _ = m.ReportView(id) // cannot fail: found
		}
	})
	if !found {
		return &httpx.Error{Status: http.StatusNotFound, Field: "number", Code: "not_found",
			Msg: "no report " + number + " at site " + site}
	}
	loc := a.siteZone(site)
	p := publicPage{Number: v.Number, Site: site, Category: serviceName(v.Category, ""), Building: v.Building,
		Status: statusNames[v.Status], MergedInto: v.MergedIntoNumber}
	if p.Number == "" {
		p.Number = v.ID
	}
	if v.MergedInto != "" && p.MergedInto == "" {
		p.MergedInto = v.MergedInto
	}
	for _, st := range v.Steps {
		ps := publicStep{When: st.HLC.Time().In(loc).Format("2006-01-02 15:04"), Status: statusNames[st.Status],
			Event: stepNames[st.Event], Reply: st.Reply}
		if st.Event == merge.HistoryMergedInto {
			ps.Reply = "" // the page names it once, above
		}
		if ps.Event == "" {
			continue
		}
		p.Steps = append(p.Steps, ps)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	var b strings.Builder
	if err := publicTmpl.Execute(&b, p); err != nil {
		return err
	}
	_, err := w.Write([]byte(b.String()))
	return ignoreWriteErr(err)
}

// ignoreWriteErr drops the error of a write to a client that went away.
func ignoreWriteErr(error) error { return nil }

var publicTmpl = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>报修进度 {{.Number}}</title>
<style>
body{font:18px/1.5 system-ui,"Noto Sans CJK SC",sans-serif;margin:0 auto;max-width:40rem;padding:1rem;color:#1a1a1a;background:#fff}
h1{font-size:1.6rem;margin:.2rem 0}
dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem}
dt{color:#444}
dd{margin:0;font-weight:600}
ol{padding-left:1.2rem}
li{margin:.6rem 0}
.when{color:#444;display:block}
.merged{background:#fff4d6;border:2px solid #8a6100;padding:.6rem;border-radius:.4rem}
</style></head>
<body><main>
<h1>报修进度 Report <span id="number">{{.Number}}</span></h1>
{{if .MergedInto}}<p class="merged" id="merged">此问题已与 <strong>{{.MergedInto}}</strong> 合并处理。This report is followed as {{.MergedInto}}.</p>{{end}}
<dl>
<dt>状态 Status</dt><dd id="status">{{.Status}}</dd>
<dt>类别 Category</dt><dd>{{.Category}}</dd>
<dt>楼栋 Building</dt><dd>{{.Building}}</dd>
</dl>
<h2>进度 Timeline</h2>
<ol id="steps">{{range .Steps}}<li><span class="when">{{.When}}</span>{{.Event}}{{if .Status}} — {{.Status}}{{end}}{{if .Reply}}<br>{{.Reply}}{{end}}</li>{{end}}</ol>
</main></body></html>
`))
