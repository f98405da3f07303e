package api

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/httpx"
)

// EventScanner reads stored events in pages, for exports.
type EventScanner interface {
	ScanEvents(site string, cursor []byte, limit int) ([]store.SiteEvent, []byte, error)
}

// exportPage is how many stored events one read of an export takes: each
// page is its own short transaction, written out before the next.
const exportPage = 1000

// exportRow is one exported event.
type exportRow struct {
	Site   string          `json:"site"`
	Device string          `json:"device"`
	Seq    uint64          `json:"seq"`
	Kind   string          `json:"kind"`
	HLC    uint64          `json:"hlc"`
	Time   string          `json:"time"`
	Body   json.RawMessage `json:"body"`
}

var exportHeader = []string{"site", "device", "seq", "kind", "hlc", "time", "body"}

// exportQuery is a checked export request.
type exportQuery struct {
	sites    []string // "" is every site
	kind     event.Kind
	anyKind  bool
	from, to time.Time // zero: open
	csv      bool
}

// parseExport checks the export's parameters, naming the bad one.
func (a *API) parseExport(r *http.Request) (exportQuery, error) {
	var q exportQuery
	v := r.URL.Query()
	for name := range v {
		switch name {
		case "kind", "from", "to", "site", "format":
		default:
			return q, httpx.BadRequest(name, "%s is not a parameter of the export (kind, from, to, site, format)", name)
		}
	}
	if k := v.Get("kind"); k == "" {
		q.anyKind = true
	} else if kind, ok := event.ParseKind(k); ok && kind < event.FirstHubKind {
		q.kind = kind
	} else {
		return q, httpx.BadRequest("kind", "kind %q is not an edge event kind (checkin, report, vote, rating, access, reading, alarm, gap)", k)
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"from", &q.from}, {"to", &q.to}} {
		s := v.Get(f.name)
		if s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return q, httpx.BadRequest(f.name, "%s must be an RFC 3339 time such as 2026-01-01T00:00:00+08:00", f.name)
		}
		*f.dst = t
	}
	if !q.from.IsZero() && !q.to.IsZero() && !q.to.After(q.from) {
		return q, httpx.BadRequest("to", "to must be after from")
	}
	switch v.Get("format") {
	case "", "ndjson":
	case "csv":
		q.csv = true
	default:
		return q, httpx.BadRequest("format", "format must be ndjson or csv")
	}
	site := v.Get("site")
	if site != "" {
		if err := event.ValidID(site); err != nil {
			return q, httpx.BadRequest("site", "site %v", err)
		}
	}
	p, err := a.Caller(r)
	if err != nil {
		return q, err
	}
	if !p.CanWrite() {
		// Raw events name residents and cards: an export is for the
		// site's operators and admins, not viewers.
		return q, &httpx.Error{Status: http.StatusForbidden, Msg: "exporting raw events needs an operator or admin"}
	}
	switch {
	case site != "" && !p.Sees(site):
		return q, errOutOfScope(site)
	case site != "":
		q.sites = []string{site}
	case len(p.Sites) > 0:
		q.sites = p.Sites
	default:
		q.sites = []string{""}
	}
	return q, nil
}

// matches says whether a stored event is asked for: its kind, and its
// time (the edge's hybrid clock) in [from, to).
func (q *exportQuery) matches(ev *event.Event) bool {
	if !q.anyKind && ev.Kind != q.kind {
		return false
	}
	t := ev.HLC.Time()
	return (q.from.IsZero() || !t.Before(q.from)) && (q.to.IsZero() || t.Before(q.to))
}

// export streams stored raw events, one a line (NDJSON or CSV), for
// archives: GET /api/v1/export?kind=&from=&to=&site=&format=.
func (a *API) export(w http.ResponseWriter, r *http.Request) error {
	q, err := a.parseExport(r)
	if err != nil {
		return err
	}
	if q.csv {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="linli-events.csv"`)
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	cw := csv.NewWriter(w)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if q.csv {
		if err := cw.Write(exportHeader); err != nil {
			return nil
		}
	}
	for _, site := range q.sites {
		var cursor []byte
		for {
			evs, next, err := a.Export.ScanEvents(site, cursor, exportPage)
			if err != nil {
				// The status is sent: the export ends short, and the log
				// says why.
				a.Logger.Error("export: read events", "err", err)
				return nil
			}
			for i := range evs {
				if !q.matches(&evs[i].Event) {
					continue
				}
				row := exportRowOf(&evs[i])
				if q.csv {
					err = cw.Write([]string{row.Site, row.Device, strconv.FormatUint(row.Seq, 10), row.Kind,
						strconv.FormatUint(row.HLC, 10), row.Time, string(row.Body)})
				} else {
					err = enc.Encode(row)
				}
				if err != nil {
					return nil // the client went away
				}
			}
			cw.Flush()
			if cw.Error() != nil {
				return nil
			}
			_ = rc.Flush()
			if next == nil || r.Context().Err() != nil {
				break
			}
			cursor = next
		}
	}
	return nil
}

// exportRowOf renders a stored event. Its body is decoded without the
// validation of today's rules, so an event an older edge recorded under
// looser ones is exported as stored, not dropped.
func exportRowOf(ev *store.SiteEvent) exportRow {
	row := exportRow{Site: ev.Site, Device: ev.Device, Seq: ev.Seq, Kind: ev.Kind.String(), HLC: uint64(ev.HLC),
		Time: ev.HLC.Time().Format(time.RFC3339Nano), Body: json.RawMessage("null")}
	b, err := event.NewBody(ev.Kind)
	if err == nil {
		err = event.Unmarshal(ev.Body, b)
	}
	if err == nil {
		if js, jerr := json.Marshal(b); jerr == nil {
			row.Body = js
		}
	} else {
		row.Body, _ = json.Marshal(map[string]string{"undecodable": fmt.Sprintf("%x", []byte(ev.Body))})
	}
	return row
}
