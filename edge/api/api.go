// Package api is the request path every edge serves, kiosk or gateway:
// the router with its per-route counts, decoding and the mapping of store
// errors to answers, the write path into the outbox, and the routes both
// roles answer (check-ins, reports, votes, ratings, the replica's reads,
// sync state, /healthz, /readyz, /metrics). A role adds its own routes
// (see Route): the kiosk's in edge/kiosk, the gateway's writes in
// edge/gateway; an edge of the other role answers those 404, naming the
// role that serves them.
package api

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"linli/edge/diskguard"
	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/edge/seats"
	"linli/shared/event"
	"linli/shared/httpx"
)

// Log is the durable event log writes go to.
type Log interface {
	// Append returns once the event is synced to disk; a *event.FieldError
	// means bad input, outbox.ErrClosed a closed store, and any other error
	// that nothing was acknowledged.
	Append(ctx context.Context, body event.Body) (event.Event, error)
	Cursors() (last, acked, pending uint64)
}

// Sync tells whether the hub session is up.
type Sync interface {
	Connected() bool
	LastSync() time.Time
}

// Seats decides a check-in at once from the kiosk's share of seats and
// records it; nil means every check-in is "recorded" for the hub to decide.
type Seats interface {
	// Checkin records c and returns the answer for the resident;
	// seats.ErrEnded when the activity is over (nothing stored).
	Checkin(ctx context.Context, c *event.Checkin) (event.Event, seats.Answer, error)
	// Attended tells whether resident attended activity, as far as the
	// kiosk knows; known is false when it does not know the activity.
	Attended(activity, resident string) (known, attended bool, err error)
}

// Replica answers reads from the state last synced from the hub, in the
// views an edge serves.
type Replica interface {
	// Notices lists the notices in force at now.
	Notices(now time.Time) ([]replica.Notice, error)
	// Activities lists the activities, with resident's standing when
	// resident is set (as recorded).
	Activities(resident string) ([]replica.Activity, error)
	// Report returns report id; false when the edge does not know it.
	Report(id string) (replica.Report, bool, error)
	// Reports lists reports, filtered by category and building ("": any)
	// and, when open is set, to those neither resolved nor rejected.
	Reports(category, building string, open bool) ([]replica.Report, error)
}

// Roles of an edge.
const (
	RoleKiosk   = "kiosk"
	RoleGateway = "gateway"
)

// HandlerFunc serves a request; an error is answered as
// {"error","field"} with its status (httpx.WriteError).
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// Route is a route a role adds to the edge API.
type Route struct {
	Pattern string // as http.ServeMux takes it: "POST /api/v1/access"
	// Role is the role that serves the route; an edge of another role
	// answers it 404, saying which role does.
	Role   string
	Handle HandlerFunc
}

// API is the edge's HTTP handler.
type API struct {
	Role string
	Log  Log
	Sync Sync
	// Identity says what the hub last said of this edge's identity (nil: not
	// reported).
	Identity func() string
	Seats    Seats   // optional
	Replica  Replica // optional
	Registry *prometheus.Registry
	Logger   *slog.Logger
	UI       http.Handler     // optional: the resident web UI at / (kiosks)
	Health   func() error     // optional: extra liveness check
	Ready    http.HandlerFunc // optional: GET /readyz
	// Detail adds what status tools read to GET /api/v1/sync; optional.
	Detail func() SyncDetail

	// Pseudonym, when set, replaces every resident id before it is stored,
	// sent or looked up (a site that treats resident numbers as personal
	// data); nil keeps ids as given.
	Pseudonym func(resident string) string

	// Routes are the roles' own routes (kiosk.Handlers.Mount,
	// gateway.Writes.Mount add them).
	Routes []Route

	// Kiosks only, set by the kiosk's Mount. CheckPlace refuses a
	// report's building and unit (already normalised) the site plan does
	// not have; Number gives a valid report its short number;
	// ResidentReports answers GET /api/v1/reports?resident=, the reports
	// a resident filed or voted for here (resident as recorded).
	CheckPlace      func(building, unit string) error
	Number          func() (string, error)
	ResidentReports func(w http.ResponseWriter, resident, category, building string, open bool) error

	requests *prometheus.CounterVec
}

// Handler builds the router.
func (a *API) Handler() http.Handler {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "linli_edge_http_requests_total", Help: "HTTP API requests by route and status code.",
	}, []string{"route", "code"})
	if a.Registry != nil {
		a.Registry.MustRegister(a.requests)
	}
	mux := http.NewServeMux()
	handle := func(pattern string, h HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
			if err := h(rec, r); err != nil {
				httpx.WriteError(rec, err)
			}
			a.requests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
		})
	}
	handle("POST /api/v1/checkins", a.postCheckin)
	handle("POST /api/v1/reports", a.postReport)
	handle("POST /api/v1/reports/{id}/votes", a.postVote)
	handle("POST /api/v1/ratings", a.postRating)
	handle("GET /api/v1/notices", a.getNotices)
	handle("GET /api/v1/activities", a.getActivities)
	handle("GET /api/v1/reports/{id}", a.getReport)
	handle("GET /api/v1/reports", a.getReports)
	handle("GET /api/v1/sync", a.getSync)
	handle("GET /healthz", a.healthz)
	for _, rt := range a.Routes {
		handle(rt.Pattern, a.only(rt.Role, rt.Handle))
	}
	if a.Ready != nil {
		mux.HandleFunc("GET /readyz", a.Ready)
	}
	if a.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{}))
	}
	if a.UI != nil && a.Role == RoleKiosk {
		mux.Handle("GET /", a.UI)
	}
	return mux
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }

// Unwrap lets http.ResponseController reach the connection (flushes and
// deadlines of the alarm stream).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// only serves h on edges of role; the others answer 404.
func (a *API) only(role string, h HandlerFunc) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if a.Role != role {
			return &httpx.Error{Status: http.StatusNotFound, Msg: "this edge is a " + a.Role + "; " + r.URL.Path + " is served by " + role + "s only"}
		}
		return h(w, r)
	}
}

// Who is a resident id as the edge records it: its pseudonym when the
// site pseudonymises, else as given. Bad ids pass through unchanged, for
// validation to name.
func (a *API) Who(resident string) string {
	if a.Pseudonym == nil || event.ValidID(resident) != nil {
		return resident
	}
	return a.Pseudonym(resident)
}

// Created is the answer to a durable write.
type Created struct {
	ID         string `json:"id"`
	Seq        uint64 `json:"seq"`
	Status     string `json:"status,omitempty"`
	Act        string `json:"act,omitempty"`        // check-ins: signup or attendance, when the kiosk knows the activity
	Credential string `json:"credential,omitempty"` // access: the card's pseudonym as stored
	Number     string `json:"number,omitempty"`     // reports: the short number residents read out
}

// Write validates body and appends it, answering 201 only after the synced
// commit.
func (a *API) Write(w http.ResponseWriter, r *http.Request, body event.Body) error {
	ev, err := a.Append(r.Context(), body)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, Created{ID: ev.ID(), Seq: ev.Seq})
	return nil
}

// Append validates body and appends it; its errors are answers (400 for
// bad input, 503 or 507 when the store cannot take it).
func (a *API) Append(ctx context.Context, body event.Body) (event.Event, error) {
	if err := body.Validate(); err != nil {
		return event.Event{}, httpx.FromValidation(err)
	}
	ev, err := a.Log.Append(ctx, body)
	if err != nil {
		return event.Event{}, a.StoreError(err)
	}
	return ev, nil
}

// ScreenText checks the fields of a write that screens show to everyone.
func ScreenText(fields ...ScreenField) error {
	for _, f := range fields {
		if err := event.ScreenText(f.Name, f.Value, f.Multiline); err != nil {
			return httpx.FromValidation(err)
		}
	}
	return nil
}

// ScreenField is a field of a write that screens show to everyone.
type ScreenField struct {
	Name, Value string
	Multiline   bool
}

// StoreError turns a failed write into its answer: bad input 400, a full
// disk 507, a closed store 503, a cancelled activity 409; anything else is
// logged and answered 503.
func (a *API) StoreError(err error) error {
	if e := httpx.FromValidation(err); e != nil {
		return e
	}
	switch {
	case errors.Is(err, diskguard.ErrDiskReserve):
		return &httpx.Error{Status: http.StatusInsufficientStorage, Msg: "this edge's disk is nearly full; the record was not saved: " + err.Error()}
	case errors.Is(err, outbox.ErrClosed), errors.Is(err, context.Canceled):
		return &httpx.Error{Status: http.StatusServiceUnavailable, Msg: "the store is closed; the record was not saved"}
	case errors.Is(err, seats.ErrCancelled):
		return &httpx.Error{Status: http.StatusConflict, Field: "activity", Code: "cancelled", Msg: "the activity is cancelled; the check-in was not recorded"}
	}
	a.Logger.Error("store write failed", "err", err)
	return &httpx.Error{Status: http.StatusServiceUnavailable, Msg: "could not store the record; it was not saved: " + err.Error()}
}

func (a *API) postCheckin(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Resident string `json:"resident"`
		Activity string `json:"activity"`
		Action   string `json:"action"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Action == "" {
		req.Action = "in"
	}
	c := &event.Checkin{Resident: a.Who(req.Resident), Activity: req.Activity, Action: req.Action, Status: event.StatusRecorded}
	if err := c.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	var ev event.Event
	var err error
	answer := seats.Answer{Status: event.StatusRecorded}
	if a.Seats != nil {
		ev, answer, err = a.Seats.Checkin(r.Context(), c)
	} else {
		ev, err = a.Log.Append(r.Context(), c)
	}
	if errors.Is(err, seats.ErrEnded) {
		return &httpx.Error{Status: http.StatusConflict, Field: "activity",
			Msg: "activity " + c.Activity + " has ended: there is nothing left to sign up or check in to"}
	}
	if err != nil {
		return a.StoreError(err)
	}
	httpx.WriteJSON(w, http.StatusCreated, Created{ID: ev.ID(), Seq: ev.Seq, Status: answer.Status, Act: answer.Act})
	return nil
}

func (a *API) postReport(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Category    string `json:"category"`
		Title       string `json:"title"`
		Description string `json:"description"`
		Building    string `json:"building"`
		Unit        string `json:"unit"`
		Resident    string `json:"resident"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if err := ScreenText(ScreenField{Name: "title", Value: req.Title, Multiline: false}, ScreenField{Name: "description", Value: req.Description, Multiline: true}); err != nil {
		return err
	}
	// A unit as residents write it ("1单元402") is stored as the site
	// writes it ("1-402"), then checked against the site plan where the
	// kiosk has one: a building the site does not have is refused here,
	// not discovered by the property office.
	unit := NormalizeUnit(req.Unit)
	if a.CheckPlace != nil {
		if err := a.CheckPlace(req.Building, unit); err != nil {
			return err
		}
	}
	rep := &event.Report{Category: req.Category, Title: strings.TrimSpace(req.Title),
		Description: strings.TrimSpace(req.Description), Building: req.Building, Unit: unit, Resident: a.Who(req.Resident)}
	if err := rep.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	// Numbered only once valid, so bad input spends no number.
	if a.Number != nil {
		n, err := a.Number()
		if err != nil {
			return a.StoreError(err)
		}
		rep.Number = n
	}
	ev, err := a.Append(r.Context(), rep)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, Created{ID: ev.ID(), Seq: ev.Seq, Number: rep.Number})
	return nil
}

func (a *API) postVote(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Resident string `json:"resident"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	return a.Write(w, r, &event.Vote{Report: r.PathValue("id"), Resident: a.Who(req.Resident)})
}

func (a *API) postRating(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Resident string `json:"resident"`
		Target   string `json:"target"`
		// A number of any kind, so 3.5 is refused in the words of the
		// score's rule rather than of Go's int.
		Score   float64 `json:"score"`
		Comment string  `json:"comment"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Score != math.Trunc(req.Score) || req.Score < 1 || req.Score > 5 {
		return httpx.BadRequest("score", "score: must be a whole number from 1 to 5")
	}
	if err := ScreenText(ScreenField{Name: "comment", Value: req.Comment, Multiline: true}); err != nil {
		return err
	}
	if err := a.mayRate(req.Target, a.Who(req.Resident)); err != nil {
		return err
	}
	return a.Write(w, r, &event.Rating{Resident: a.Who(req.Resident), Target: req.Target, Score: int(req.Score),
		Comment: strings.TrimSpace(req.Comment)})
}

// mayRate refuses a rating of an activity the kiosk knows by a resident who
// did not attend it: signing up is not taking part. Reports, and
// activities the kiosk does not know, are left to the hub, which counts
// only attendees' ratings of an activity.
func (a *API) mayRate(target, resident string) error {
	if a.Seats == nil || event.ValidID(target) != nil || event.ValidID(resident) != nil {
		return nil // a report (DEVICE.SEQ), or bad input for validation to name
	}
	known, attended, err := a.Seats.Attended(target, resident)
	if err != nil {
		return a.StoreError(err)
	}
	if known && !attended {
		return &httpx.Error{Status: http.StatusConflict, Field: "target",
			Msg: "only residents who checked in at " + target + " can rate it"}
	}
	return nil
}

func (a *API) getNotices(w http.ResponseWriter, r *http.Request) error {
	if a.Replica == nil {
		httpx.WriteJSON(w, http.StatusOK, []any{})
		return nil
	}
	v, err := a.Replica.Notices(time.Now())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) getActivities(w http.ResponseWriter, r *http.Request) error {
	resident := r.URL.Query().Get("resident")
	if resident != "" {
		if err := event.ValidID(resident); err != nil {
			return httpx.BadRequest("resident", "resident %v", err)
		}
	}
	if a.Replica == nil {
		httpx.WriteJSON(w, http.StatusOK, []any{})
		return nil
	}
	v, err := a.Replica.Activities(a.Who(resident))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) getReport(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, _, err := event.ParseID(id); err != nil {
		return httpx.BadRequest("id", "%v", err)
	}
	if a.Replica != nil {
		v, ok, err := a.Replica.Report(id)
		if err != nil {
			return err
		}
		if ok {
			httpx.WriteJSON(w, http.StatusOK, v)
			return nil
		}
	}
	return &httpx.Error{Status: http.StatusNotFound, Msg: "report " + id + " is not known here yet (not synced from the hub)"}
}

// getReports lists synced reports (?category=&building=&open=true): the
// kiosk suggests open reports of the same kind in the same building before
// a resident files a duplicate. With ?resident= it lists instead the
// reports that resident filed or said "me too" to at this kiosk.
func (a *API) getReports(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	category, building := q.Get("category"), q.Get("building")
	if category != "" && !slices.Contains(event.Categories, category) {
		return httpx.BadRequest("category", "category %q is not one of %v", category, event.Categories)
	}
	if building != "" {
		if err := event.ValidID(building); err != nil {
			return httpx.BadRequest("building", "building %v", err)
		}
	}
	if q.Has("resident") {
		resident, err := a.ResidentParam(r)
		if err != nil {
			return err
		}
		return a.only(RoleKiosk, func(w http.ResponseWriter, r *http.Request) error {
			if a.ResidentReports == nil {
				return ErrNoIndex
			}
			return a.ResidentReports(w, resident, category, building, q.Get("open") == "true")
		})(w, r)
	}
	if a.Replica == nil {
		httpx.WriteJSON(w, http.StatusOK, []any{})
		return nil
	}
	v, err := a.Replica.Reports(category, building, q.Get("open") == "true")
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, v)
	return nil
}

// SyncDetail is what GET /api/v1/sync tells beyond the cursors, for
// status tools: the oldest record the hub has not acked and the disk
// guard's state.
type SyncDetail struct {
	OldestPending    time.Time // zero when nothing is pending
	DiskFreeBytes    uint64
	DiskReserveBytes uint64
	DiskRefusing     string // why writes are refused; "" when they are not
	// FirstHeld is the oldest seq still stored (the next seq when none);
	// 0 when unknown.
	FirstHeld uint64
	// Horizon is the hub's backup horizon as its last ack said; nil when
	// the hub takes no backups (retention alone then deletes acked events).
	Horizon *uint64
}

func (a *API) getSync(w http.ResponseWriter, r *http.Request) error {
	last, acked, pending := a.Log.Cursors()
	out := struct {
		Connected bool       `json:"connected"`
		Pending   uint64     `json:"pending"`
		LastSeq   uint64     `json:"last_seq"`
		AckedSeq  uint64     `json:"acked_seq"`
		LastSync  *time.Time `json:"last_sync"`
		// Extensions: absent when the edge does not know them.
		OldestPending    *time.Time `json:"oldest_pending,omitempty"`
		DiskFreeBytes    *uint64    `json:"disk_free_bytes,omitempty"`
		DiskReserveBytes *uint64    `json:"disk_reserve_bytes,omitempty"`
		DiskRefusing     *string    `json:"disk_refusing,omitempty"`
		FirstHeld        *uint64    `json:"first_held,omitempty"`
		BackupHorizon    *uint64    `json:"backup_horizon,omitempty"`
		// Identity: "ok", "replaced" or "revoked" as the hub last said;
		// absent while the edge is not enrolled.
		Identity string `json:"identity,omitempty"`
	}{Pending: pending, LastSeq: last, AckedSeq: acked}
	if a.Detail != nil {
		d := a.Detail()
		if !d.OldestPending.IsZero() {
			t := d.OldestPending.UTC().Truncate(time.Second)
			out.OldestPending = &t
		}
		out.DiskFreeBytes, out.DiskReserveBytes, out.DiskRefusing = &d.DiskFreeBytes, &d.DiskReserveBytes, &d.DiskRefusing
		if d.FirstHeld != 0 {
			out.FirstHeld = &d.FirstHeld
		}
		out.BackupHorizon = d.Horizon
	}
	if a.Identity != nil {
		out.Identity = a.Identity()
	}
	if a.Sync != nil {
		out.Connected = a.Sync.Connected()
		if t := a.Sync.LastSync(); !t.IsZero() {
			t = t.UTC().Truncate(time.Second)
			out.LastSync = &t
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	if a.Health != nil {
		if err := a.Health(); err != nil {
			return &httpx.Error{Status: http.StatusServiceUnavailable, Msg: err.Error()}
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "role": a.Role})
	return nil
}

// ResidentParam reads the required ?resident=, as the edge records it.
func (a *API) ResidentParam(r *http.Request) (string, error) {
	resident := r.URL.Query().Get("resident")
	if err := event.ValidID(resident); err != nil {
		return "", httpx.BadRequest("resident", "resident %v", err)
	}
	return a.Who(resident), nil
}

// ErrNoIndex answers a resident's listings on a kiosk that keeps no
// resident index.
var ErrNoIndex = &httpx.Error{Status: http.StatusServiceUnavailable, Msg: "this kiosk keeps no resident index"}
