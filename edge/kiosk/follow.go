package kiosk

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	qrcode "github.com/skip2/go-qrcode"

	"linli/edge/api"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/kv"
	"linli/shared/merge"
)

// Following a report up: the short number residents read out, the QR code
// that opens its public page at the hub, "still not fixed", and what
// changed since the resident last looked.

// DefaultReopenWindow is how long after its resolution a resident may
// still say a report is not fixed.
const DefaultReopenWindow = 14 * 24 * time.Hour

// Numbers gives this kiosk's reports their short numbers: the kiosk's code
// and its own counter, kept in the edge store. The counter is committed
// (fsync'd with the store's SyncWrites) before the number is used, so a
// restart or a crash can leave a gap but never give a number twice, and
// kiosks with different codes never meet each other's numbers, offline
// or not.
type Numbers struct {
	db   *badger.DB
	code string
	mu   sync.Mutex
}

var kioskCode = regexp.MustCompile(`^[A-Z0-9]{1,8}$`)

// NewNumbers numbers reports under code in db.
func NewNumbers(db *badger.DB, code string) (*Numbers, error) {
	if !kioskCode.MatchString(code) {
		return nil, fmt.Errorf("kiosk code %q: must be 1 to 8 capital letters and digits, such as B1", code)
	}
	return &Numbers{db: db, code: code}, nil
}

// DefaultKioskCode derives a kiosk code from the kiosk's building (or,
// without one, its device id): its letters and digits, upper-cased, at
// most 8. Two kiosks of one building need codes of their own.
func DefaultKioskCode(building, device string) string {
	src := building
	if src == "" {
		src = device
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(src) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	code := b.String()
	if len(code) > 8 {
		code = code[len(code)-8:] // the end tells kiosk-b1 from kiosk-b2
	}
	if code == "" {
		code = "K"
	}
	return code
}

// Next commits and returns the next number, such as B1-0007.
func (n *Numbers) Next() (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var next uint64
	err := n.db.Update(func(txn *badger.Txn) error {
		last, err := kv.GetU64(txn, []byte(keyNumber))
		if err != nil {
			return err
		}
		next = last + 1
		return txn.Set([]byte(keyNumber), kv.U64(next))
	})
	if err != nil {
		return "", fmt.Errorf("next report number: %w", err)
	}
	return fmt.Sprintf("%s-%04d", n.code, next), nil
}

// Seen tells when resident last looked at their reports here (zero:
// never).
func (x *Index) Seen(resident string) (time.Time, error) {
	var ms uint64
	err := x.db.View(func(txn *badger.Txn) error {
		var err error
		ms, err = kv.GetU64(txn, []byte(prefixSeen+resident+"/"))
		return err
	})
	if err != nil || ms == 0 {
		return time.Time{}, err
	}
	return time.UnixMilli(int64(ms)).UTC(), nil
}

// MarkSeen records that resident looked at their reports at t.
func (x *Index) MarkSeen(resident string, t time.Time) error {
	err := x.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(prefixSeen+resident+"/"), kv.U64(uint64(t.UnixMilli())))
	})
	if err != nil {
		return fmt.Errorf("mark reports seen: %w", err)
	}
	return nil
}

// postSeen records that ?resident= (in the body) has looked at their
// reports: the home screen's badge counts changes after this.
func (a *Handlers) postSeen(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Resident string `json:"resident"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if err := event.ValidID(req.Resident); err != nil {
		return httpx.BadRequest("resident", "resident %v", err)
	}
	idx, err := a.residents()
	if err != nil {
		return err
	}
	if err := idx.MarkSeen(a.Who(req.Resident), time.Now()); err != nil {
		return a.StoreError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// reportOut reads report id from the replica as the kiosk serves it.
func (a *Handlers) reportOut(id string) (replica.Report, error) {
	if _, _, err := event.ParseID(id); err != nil {
		return replica.Report{}, httpx.BadRequest("id", "%v", err)
	}
	if a.Replica != nil {
		ro, ok, err := a.Replica.Report(id)
		if err != nil {
			return replica.Report{}, err
		}
		if ok {
			return ro, nil
		}
	}
	return replica.Report{}, &httpx.Error{Status: http.StatusNotFound, Field: "id", Code: "not_found",
		Msg: "report " + id + " is not known here yet (not synced from the hub)"}
}

// resolvedAt is when the report's latest resolution happened, zero when
// its timeline has none.
func resolvedAt(v *merge.ReportView) time.Time {
	for i := len(v.Steps) - 1; i >= 0; i-- {
		if v.Steps[i].Status == event.ReportResolved {
			return v.Steps[i].HLC.Time()
		}
	}
	return time.Time{}
}

// postReopen records a resident's "still not fixed" of a resolved report,
// within the kiosk's reopen window of its resolution. The hub reopens it
// (resolved → accepted) when the event arrives after the resolution.
func (a *Handlers) postReopen(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Resident string `json:"resident"`
		Reason   string `json:"reason"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if err := event.ValidID(req.Resident); err != nil {
		return httpx.BadRequest("resident", "resident %v", err)
	}
	if err := api.ScreenText(api.ScreenField{Name: "reason", Value: req.Reason, Multiline: true}); err != nil {
		return err
	}
	ro, err := a.reportOut(r.PathValue("id"))
	if err != nil {
		return err
	}
	switch {
	case ro.MergedInto != "":
		return &httpx.Error{Status: http.StatusConflict, Field: "id", Code: "merged",
			Msg: fmt.Sprintf("report %s is merged into %s; follow that one", ro.ID, orID(ro.MergedIntoNumber, ro.MergedInto))}
	case ro.Status != event.ReportResolved:
		return &httpx.Error{Status: http.StatusConflict, Field: "id", Code: "not_resolved",
			Msg: fmt.Sprintf("report %s is %s, not resolved: there is nothing to reopen", ro.ID, ro.Status)}
	}
	window := DefaultReopenWindow
	if a.Kiosk != nil && a.Kiosk.ReopenWindow > 0 {
		window = a.Kiosk.ReopenWindow
	}
	if at := resolvedAt(&ro.ReportView); !at.IsZero() && time.Since(at) > window {
		return &httpx.Error{Status: http.StatusConflict, Field: "id", Code: "expired",
			Msg: fmt.Sprintf("report %s was resolved on %s, more than %s ago: please file a new report", ro.ID,
				at.Format(time.DateOnly), window)}
	}
	return a.Write(w, r, &event.ReportReopen{Report: ro.ID, Resident: a.Who(req.Resident), Reason: strings.TrimSpace(req.Reason)})
}

func orID(number, id string) string {
	if number != "" {
		return number
	}
	return id
}

// PublicURL is the address of a report's public status page at the hub:
// base + /r/{site}/{number}, or the report id when it has no number.
func PublicURL(base, site, number, id string) string {
	return strings.TrimRight(base, "/") + "/r/" + url.PathEscape(site) + "/" + url.PathEscape(orID(number, id))
}

// getQR answers a QR code of the report's public page, as SVG (qr.svg) or
// PNG (qr.png), made here so it works offline.
func (a *Handlers) getQR(w http.ResponseWriter, r *http.Request) error {
	if a.Kiosk == nil || a.Kiosk.PublicURL == "" {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "this kiosk has no public-url setting: no QR codes"}
	}
	ro, err := a.reportOut(r.PathValue("id"))
	if err != nil {
		return err
	}
	q, err := qrcode.New(PublicURL(a.Kiosk.PublicURL, a.Kiosk.Site, ro.Number, ro.ID), qrcode.Medium)
	if err != nil {
		return fmt.Errorf("qr code of report %s: %w", ro.ID, err)
	}
	w.Header().Set("Cache-Control", "no-cache")
	switch r.PathValue("format") {
	case "qr.png":
		png, err := q.PNG(320)
		if err != nil {
			return fmt.Errorf("qr code of report %s: %w", ro.ID, err)
		}
		w.Header().Set("Content-Type", "image/png")
		_, err = w.Write(png)
		return ignoreGone(err)
	case "qr.svg":
		w.Header().Set("Content-Type", "image/svg+xml")
		_, err = w.Write(qrSVG(q.Bitmap()))
		return ignoreGone(err)
	}
	return &httpx.Error{Status: http.StatusNotFound, Msg: "no route " + r.URL.Path + ": qr.svg or qr.png"}
}

// ignoreGone drops the error of a write to a browser that went away:
// nothing is left to tell it.
func ignoreGone(error) error { return nil }

// qrSVG draws a QR bitmap (quiet zone included) as one SVG path.
func qrSVG(bits [][]bool) []byte {
	n := len(bits)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges" role="img">`, n, n)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n)
	for y, row := range bits {
		for x, on := range row {
			if on {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x, y)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return []byte(b.String())
}
