// Package kiosk serves an edge's HTTP API to residents and devices: the
// writes of docs/interface.md, the replica's reads, sync state, health and metrics,
// and on kiosks the resident web UI.
package kiosk

import (
	"context"
	"encoding/json"
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
	"linli/edge/seats"
	"linli/shared/accesslist"
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

// Replica answers reads from the state last synced from the hub.
type Replica interface {
	Notices(now time.Time) (any, error)
	Activities(resident string) (any, error)
	Report(id string) (any, bool, error)
	Reports(category, building string, open bool) (any, error)
}

// Gateway applies a gateway's rules to what is posted to it.
type Gateway interface {
	// Reading records a reading after raising or clearing the alarm it
	// implies, as for a wired sensor; errors as Log.Append.
	Reading(ctx context.Context, r *event.Reading) (event.Event, error)
}

// Roles of an edge.
const (
	RoleKiosk   = "kiosk"
	RoleGateway = "gateway"
)

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
	UI       http.Handler     // optional: the resident web UI at /
	Health   func() error     // optional: extra liveness check
	Ready    http.HandlerFunc // optional: GET /readyz
	// Detail adds what status tools read to GET /api/v1/sync; optional.
	Detail func() SyncDetail

	// Pseudonym, when set, replaces every resident id before it is stored,
	// sent or looked up (a site that treats resident numbers as personal
	// data); nil keeps ids as given.
	Pseudonym func(resident string) string

	// CardKey, on gateways, returns the site's card key from the access
	// list in force (nil before the first list). A card named in a posted
	// access event is stored only as its keyed pseudonym, as the
	// gateway's reader records it; without a key the event is kept
	// without its card, never with it in clear.
	CardKey func() []byte

	// Gateways only: the rules readings go through (nil records them as
	// plain telemetry), and the building access events happen in.
	Gateway  Gateway
	Building string

	// Kiosks only: the settings the UI reads and what residents did here.
	Kiosk     *Info      // optional
	Residents Residents  // optional
	Alarms    *AlarmFeed // optional: the alarms residents see, pushed
	Numbers   *Numbers   // optional: short report numbers

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
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
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
	handle("POST /api/v1/reports/{id}/reopen", a.kioskOnly(a.postReopen))
	handle("POST /api/v1/reports/seen", a.kioskOnly(a.postSeen))
	handle("GET /api/v1/reports/{id}/{format}", a.kioskOnly(a.getQR))
	handle("POST /api/v1/ratings", a.postRating)
	handle("POST /api/v1/access", a.gatewayOnly(a.postAccess))
	handle("POST /api/v1/readings", a.gatewayOnly(a.postReading))
	handle("GET /api/v1/notices", a.getNotices)
	handle("GET /api/v1/activities", a.getActivities)
	handle("GET /api/v1/reports/{id}", a.getReport)
	handle("GET /api/v1/reports", a.getReports)
	handle("GET /api/v1/sync", a.getSync)
	handle("GET /api/v1/kiosk", a.kioskOnly(a.getKiosk))
	handle("GET /api/v1/alarms", a.kioskOnly(a.getAlarms))
	handle("GET /api/v1/alarms/stream", a.kioskOnly(a.streamAlarms))
	handle("GET /api/v1/checkins", a.kioskOnly(a.getCheckins))
	handle("GET /api/v1/ratings", a.kioskOnly(a.getRatings))
	handle("GET /healthz", a.healthz)
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

func (a *API) gatewayOnly(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if a.Role != RoleGateway {
			return &httpx.Error{Status: http.StatusNotFound, Msg: "this edge is a " + a.Role + "; " + r.URL.Path + " is served by gateways only"}
		}
		return h(w, r)
	}
}

// who is a resident id as the kiosk records it: its pseudonym when the
// site pseudonymises, else as given. Bad ids pass through unchanged, for
// validation to name.
func (a *API) who(resident string) string {
	if a.Pseudonym == nil || event.ValidID(resident) != nil {
		return resident
	}
	return a.Pseudonym(resident)
}

// created is the answer to a durable write.
type created struct {
	ID         string `json:"id"`
	Seq        uint64 `json:"seq"`
	Status     string `json:"status,omitempty"`
	Act        string `json:"act,omitempty"`        // check-ins: signup or attendance, when the kiosk knows the activity
	Credential string `json:"credential,omitempty"` // access: the card's pseudonym as stored
	Number     string `json:"number,omitempty"`     // reports: the short number residents read out
}

// write validates body and appends it, answering 201 only after the synced
// commit.
func (a *API) write(w http.ResponseWriter, r *http.Request, body event.Body) error {
	ev, err := a.append(r.Context(), body)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, created{ID: ev.ID(), Seq: ev.Seq})
	return nil
}

func (a *API) append(ctx context.Context, body event.Body) (event.Event, error) {
	if err := body.Validate(); err != nil {
		return event.Event{}, httpx.FromValidation(err)
	}
	ev, err := a.Log.Append(ctx, body)
	if err != nil {
		return event.Event{}, a.storeError(err)
	}
	return ev, nil
}

// screenText checks the fields of a write that screens show to everyone.
func screenText(fields ...screenField) error {
	for _, f := range fields {
		if err := event.ScreenText(f.name, f.value, f.multiline); err != nil {
			return httpx.FromValidation(err)
		}
	}
	return nil
}

type screenField struct {
	name, value string
	multiline   bool
}

func (a *API) storeError(err error) error {
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
	c := &event.Checkin{Resident: a.who(req.Resident), Activity: req.Activity, Action: req.Action, Status: event.StatusRecorded}
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
		return a.storeError(err)
	}
	httpx.WriteJSON(w, http.StatusCreated, created{ID: ev.ID(), Seq: ev.Seq, Status: answer.Status, Act: answer.Act})
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
	if err := screenText(screenField{"title", req.Title, false}, screenField{"description", req.Description, true}); err != nil {
		return err
	}
	// A unit as residents write it ("1单元402") is stored as the site
	// writes it ("1-402"), then checked against the site plan where the
	// kiosk has one: a building the site does not have is refused here,
	// not discovered by the property office.
	unit := NormalizeUnit(req.Unit)
	if a.Kiosk != nil {
		if err := a.Kiosk.Plan.CheckPlace(req.Building, unit); err != nil {
			return err
		}
	}
	rep := &event.Report{Category: req.Category, Title: strings.TrimSpace(req.Title),
		Description: strings.TrimSpace(req.Description), Building: req.Building, Unit: unit, Resident: a.who(req.Resident)}
	if err := rep.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	// Numbered only once valid, so bad input spends no number.
	if a.Numbers != nil {
		n, err := a.Numbers.Next()
		if err != nil {
			return a.storeError(err)
		}
		rep.Number = n
	}
	ev, err := a.append(r.Context(), rep)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, created{ID: ev.ID(), Seq: ev.Seq, Number: rep.Number})
	return nil
}

func (a *API) postVote(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Resident string `json:"resident"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	return a.write(w, r, &event.Vote{Report: r.PathValue("id"), Resident: a.who(req.Resident)})
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
	if err := screenText(screenField{"comment", req.Comment, true}); err != nil {
		return err
	}
	if err := a.mayRate(req.Target, a.who(req.Resident)); err != nil {
		return err
	}
	return a.write(w, r, &event.Rating{Resident: a.who(req.Resident), Target: req.Target, Score: int(req.Score),
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
		return a.storeError(err)
	}
	if known && !attended {
		return &httpx.Error{Status: http.StatusConflict, Field: "target",
			Msg: "only residents who checked in at " + target + " can rate it"}
	}
	return nil
}

func (a *API) postAccess(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Door       string `json:"door"`
		Credential string `json:"credential"`
		Result     string `json:"result"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	card, err := a.card(req.Credential)
	if err != nil {
		return err
	}
	ev, err := a.append(r.Context(), &event.Access{Door: req.Door, Credential: card, Result: req.Result, Building: a.Building})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, created{ID: ev.ID(), Seq: ev.Seq, Credential: card})
	return nil
}

// card is how an access event names the credential it was posted with:
// only ever by the card's keyed pseudonym (see accesslist.PseudonymFor).
func (a *API) card(credential string) (string, error) {
	if credential == "" {
		return "", nil
	}
	var key []byte
	if a.CardKey != nil {
		key = a.CardKey()
	}
	p, err := accesslist.PseudonymFor(key, credential)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, accesslist.ErrNoKey):
		// No list yet, so no key: the event is kept without its card, as
		// the reader keeps a swipe before the first list. The door's
		// decision is still a record the contract answers 201 for, and a
		// card is never stored in clear.
		return "", nil
	}
	return "", httpx.BadRequest("credential", "credential: must be a card number, a Wiegand card such as 26:123:45678, or a card pseudonym h:…: %v", err)
}

func (a *API) postReading(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Sensor string          `json:"sensor"`
		Kind   string          `json:"kind"`
		Value  json.RawMessage `json:"value"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	v, err := readingValue(req.Value)
	if err != nil {
		return err
	}
	rd := &event.Reading{Sensor: req.Sensor, Type: req.Kind, Value: v}
	if a.Gateway == nil {
		return a.write(w, r, rd)
	}
	if err := rd.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	ev, err := a.Gateway.Reading(r.Context(), rd)
	if err != nil {
		return a.storeError(err)
	}
	httpx.WriteJSON(w, http.StatusCreated, created{ID: ev.ID(), Seq: ev.Seq})
	return nil
}

// readingValue accepts a number, or for smoke and water a boolean.
func readingValue(raw json.RawMessage) (float64, error) {
	switch s := strings.TrimSpace(string(raw)); s {
	case "", "null":
		return 0, httpx.BadRequest("value", "value is required")
	case "true":
		return 1, nil
	case "false":
		return 0, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, httpx.BadRequest("value", "value must be a number (or true/false for smoke and water)")
	}
	return v, nil
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
	v, err := a.Replica.Activities(a.who(resident))
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
		resident, err := a.residentParam(r)
		if err != nil {
			return err
		}
		return a.kioskOnly(func(w http.ResponseWriter, r *http.Request) error {
			return a.getResidentReports(w, resident, category, building, q.Get("open") == "true")
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
