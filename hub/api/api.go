// Package api serves the hub's HTTP API to operators and scripts: devices,
// events, merged reports, activities, notices, alarms, health and metrics.
package api

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"linli/hub/state"
	"linli/hub/store"
	"linli/hub/stream"
	"linli/shared/event"
	"linli/shared/httpx"
)

// Devices is the device registry.
type Devices interface {
	Devices() []store.DeviceRecord
	Device(id string) (store.DeviceRecord, bool)
}

// Events reads raw stored events.
type Events interface {
	Events(site, device string, after uint64, limit int) ([]event.Event, error)
}

// Authorizer decides who is calling. The zero Principal is anonymous.
type Authorizer interface {
	Authenticate(r *http.Request) (Principal, error)
}

// Principal is an authenticated caller.
type Principal struct {
	Name  string
	Admin bool
	// Role is RoleViewer, RoleOperator or RoleAdmin. Empty means operator
	// (admin when Admin is set), so Authorizers that predate roles keep
	// their meaning.
	Role string
	// Sites limits what the caller may see and change; empty is every site.
	Sites []string
	// Via says how the caller proved who they are (ViaAdminToken,
	// ViaToken, ViaSession), for the audit log.
	Via string
}

// Operator roles, from least to most allowed.
const (
	RoleViewer   = "viewer"   // reads everything in scope, changes nothing
	RoleOperator = "operator" // also triages, publishes, acknowledges
	RoleAdmin    = "admin"    // also enrolls devices, sets access lists, manages accounts
)

// How a principal authenticated.
const (
	ViaAdminToken = "admin-token"
	ViaToken      = "token"
	ViaSession    = "session"
)

// CanWrite reports whether p may change anything: every role but viewer.
func (p Principal) CanWrite() bool { return p.Admin || p.Role != RoleViewer }

// Sees reports whether site is within p's scope.
func (p Principal) Sees(site string) bool { return len(p.Sites) == 0 || slices.Contains(p.Sites, site) }

// TokenAuth accepts one static bearer token as admin.
type TokenAuth struct{ Token string }

// Authenticate checks the Authorization header.
func (t TokenAuth) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || t.Token == "" {
		return Principal{}, nil
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(t.Token)) == 1 {
		return Principal{Name: "admin", Admin: true, Role: RoleAdmin, Via: ViaAdminToken}, nil
	}
	return Principal{}, errBadToken
}

var errBadToken = &httpx.Error{Status: http.StatusUnauthorized, Msg: "the bearer token is not valid"}

// API is the hub's HTTP handler.
type API struct {
	// Owner names the worker holding a site's lease ("" when none does),
	// for the answer to a write of a site another worker holds; nil for
	// a hub alone.
	Owner func(site string) string

	Devices  Devices
	Events   Events
	Auth     Authorizer
	Registry *prometheus.Registry
	Logger   *slog.Logger
	Health   func() error
	// Ready answers GET /readyz; without it /readyz is not served.
	Ready http.HandlerFunc
	// State serves merged reports, activities, notices and alarms; without
	// it reports are listed as submitted.
	State State
	// Registry and Hub enable enrollment; without them devices only
	// appear as they connect.
	Enrollment Registry
	Hub        HubInfo
	// Extra mounts more routes (the dashboard) on the same mux.
	Extra func(mux *http.ServeMux)
	// SiteCA rotates the hub's own site CA; nil: it has none.
	SiteCA SiteCA

	// For the dashboard, each optional: the live event stream, site plans
	// by site, door and sensor states, and downlink delivery.
	Stream    *stream.Stream
	Plans     map[string]SitePlan
	Telemetry *Telemetry
	Delivery  Delivery

	// Export serves GET /api/v1/export (an embedded-store hub).
	Export EventScanner

	// Backups serves GET /api/v1/backup (an embedded-store hub).
	Backups Backups

	// TimeZone (IANA) is the zone of sites whose plan names none; empty
	// is DefaultTimeZone.
	TimeZone string

	// Directory names operator accounts: assignees and display names in
	// report histories. Without it only a plan's staff are assignees.
	Directory Directory

	// District counts GET /api/v1/district's reports and alarms with SQL
	// (a hub on PostgreSQL); nil: from the merged state in memory.
	District DistrictSource
}

// Handler builds the router.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/devices", a.wrap(a.devices))
	mux.HandleFunc("GET /api/v1/events", a.wrap(a.requireAuth(a.events)))
	if a.Enrollment != nil {
		a.mountDevices(mux)
	}
	if a.State != nil {
		a.mountMerged(mux)
		a.mountDashboard(mux)
		a.mountTriage(mux)
		a.mountOpen311(mux)
		a.mountPublic(mux)
	}
	if a.Export != nil {
		mux.HandleFunc("GET /api/v1/export", a.wrap(a.requireAuth(a.export)))
	}
	if a.Backups != nil {
		a.mountBackup(mux)
	}
	if a.SiteCA != nil {
		a.mountSiteCA(mux)
	}
	mux.HandleFunc("GET /healthz", a.wrap(a.healthz))
	if a.Ready != nil {
		mux.HandleFunc("GET /readyz", a.Ready)
	}
	if a.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{}))
	}
	if a.Extra != nil {
		a.Extra(mux)
	}
	return WithPrincipal(a.Auth, mux)
}

func (a *API) wrap(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			var no *state.NotOwnedError
			if errors.As(err, &no) {
				a.notOwned(w, no.Site)
				return
			}
			httpx.WriteError(w, httpError(err))
		}
	}
}

// Caller returns the authenticated principal of r, or an error answer.
// Handler authenticates each request once (WithPrincipal); this reads the
// outcome, so asking again costs no store reads.
func (a *API) Caller(r *http.Request) (Principal, error) {
	if p, err, ok := PrincipalFromContext(r.Context()); ok {
		return p, err
	}
	if a.Auth == nil {
		return Principal{}, nil
	}
	return a.Auth.Authenticate(r)
}

// RequireAuth wraps h so that it runs only for an authenticated caller.
func (a *API) RequireAuth(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return a.requireAuth(h)
}

func (a *API) requireAuth(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := a.Caller(r)
		if err != nil {
			return err
		}
		if p.Name == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="linli"`)
			return &httpx.Error{Status: http.StatusUnauthorized, Msg: "this needs Authorization: Bearer <token> (see <data>/admin.token)"}
		}
		if !safeMethod(r.Method) && !p.CanWrite() {
			return &httpx.Error{Status: http.StatusForbidden, Msg: "a viewer cannot change anything"}
		}
		return h(w, r)
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// errOutOfScope answers a caller who asks for a site outside their scope.
func errOutOfScope(site string) error {
	return &httpx.Error{Status: http.StatusForbidden, Field: "site", Msg: "site " + site + " is outside your scope"}
}

// Scope returns the sites a read of site should cover for the caller of r,
// in the form the list handlers loop over: []string{""} (every site) for
// an unscoped or anonymous caller asking for every site, the caller's own
// sites for a scoped one, and []string{site} when site is named and in
// scope. A named site outside the caller's scope is a 403. Credentials
// that do not check out count as anonymous here: the routes that call
// Scope are open reads (docs/interface.md), which must not start failing for a
// stale token.
func (a *API) Scope(r *http.Request, site string) ([]string, error) {
	p, err := a.Caller(r)
	if err != nil {
		p = Principal{}
	}
	switch {
	case site != "" && !p.Sees(site):
		return nil, errOutOfScope(site)
	case site != "":
		return []string{site}, nil
	case len(p.Sites) > 0:
		return slices.Clone(p.Sites), nil
	}
	return []string{""}, nil
}

// errNoSuch answers for a kind of thing (report, notice, …) with id that
// the caller cannot see: one that does not exist, and one of a site
// outside the caller's scope alike, so that an operator of another site
// does not learn from a 403 that the id exists.
func errNoSuch(kind, id string) error {
	return &httpx.Error{Status: http.StatusNotFound, Msg: "no " + kind + " " + id}
}

// seeOrNoSuch answers errNoSuch(kind, id) unless the caller of r may act
// on site, the site of an existing kind id ("": there is none). Call it
// before anything else that depends on the id's state, so that no answer
// tells a caller of another site more than a missing id would.
func (a *API) seeOrNoSuch(r *http.Request, site, kind, id string) error {
	p, err := a.Caller(r)
	if err != nil {
		return err
	}
	if site == "" || !p.Sees(site) {
		return errNoSuch(kind, id)
	}
	return nil
}

// CheckSite answers 403 unless the caller of r may act on site.
func (a *API) CheckSite(r *http.Request, site string) error {
	p, err := a.Caller(r)
	if err != nil {
		return err
	}
	if !p.Sees(site) {
		return errOutOfScope(site)
	}
	return nil
}

type deviceView struct {
	ID       string     `json:"id"`
	Site     string     `json:"site"`
	Role     string     `json:"role"`
	Version  string     `json:"version,omitempty"`
	Online   bool       `json:"online"`
	LastSeen *time.Time `json:"last_seen"`
	AckedSeq uint64     `json:"acked_seq"`
	Received uint64     `json:"received"`
	Rejected uint64     `json:"rejected,omitempty"`
	// Lost counts seqs the hub will never get (see store.DeviceRecord.Lost).
	Lost     uint64 `json:"lost"`
	Backlog  uint64 `json:"backlog"`
	LastSeq  uint64 `json:"last_seq"`
	SkewMs   int64  `json:"clock_skew_ms"`
	Down     uint64 `json:"down_cursor"`
	Enrolled bool   `json:"enrolled"`
	Revoked  bool   `json:"revoked,omitempty"`
	// Oldest is the time of the oldest event the edge had not got acked
	// when it last said hello, shown while a backlog remains.
	Oldest *time.Time `json:"oldest_unsynced,omitempty"`
}

func viewDevice(d store.DeviceRecord) deviceView {
	v := deviceView{ID: d.ID, Site: d.Site, Role: d.Role, Version: d.Version, Online: d.Online,
		AckedSeq: d.Acked, Received: d.Received, Rejected: d.Rejected, Lost: d.Lost, LastSeq: max(d.LastSeq, d.Acked), SkewMs: d.SkewMs,
		Down: d.Down}
	if v.LastSeq > d.Acked {
		v.Backlog = v.LastSeq - d.Acked
	}
	if !d.LastSeen.IsZero() {
		t := d.LastSeen.UTC()
		v.LastSeen = &t
	}
	if !d.Oldest.IsZero() && v.Backlog > 0 {
		t := d.Oldest.UTC()
		v.Oldest = &t
	}
	return v
}

func (a *API) devices(w http.ResponseWriter, r *http.Request) error {
	sites, err := a.Scope(r, r.URL.Query().Get("site"))
	if err != nil {
		return err
	}
	out := []deviceView{}
	for _, d := range a.Devices.Devices() {
		out = append(out, viewDevice(d))
	}
	out = a.enrolledView(out)
	filtered := out[:0]
	for _, d := range out {
		if sites[0] == "" || slices.Contains(sites, d.Site) {
			filtered = append(filtered, d)
		}
	}
	slices.SortFunc(filtered, func(x, y deviceView) int { return strings.Compare(x.ID, y.ID) })
	httpx.WriteJSON(w, http.StatusOK, filtered)
	return nil
}

type eventView struct {
	Device string `json:"device"`
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"`
	HLC    uint64 `json:"hlc"`
	Time   string `json:"time"`
	Body   any    `json:"body"`
}

func (a *API) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	device := q.Get("device")
	if err := event.ValidID(device); err != nil {
		return httpx.BadRequest("device", "device %v", err)
	}
	after, err := uintParam(q.Get("after"), 0)
	if err != nil {
		return httpx.BadRequest("after", "after must be a sequence number")
	}
	limit, err := uintParam(q.Get("limit"), 100)
	if err != nil || limit < 1 || limit > 10000 {
		return httpx.BadRequest("limit", "limit must be 1 to 10000")
	}
	d, ok := a.Devices.Device(device)
	if !ok {
		return errNoSuch("device", device)
	}
	if err := a.seeOrNoSuch(r, d.Site, "device", device); err != nil {
		return err
	}
	evs, err := a.Events.Events(d.Site, device, after, int(limit))
	if err != nil {
		return err
	}
	out := make([]eventView, 0, len(evs))
	for _, ev := range evs {
		body, err := ev.Decode()
		if err != nil {
			return err
		}
		out = append(out, eventView{Device: ev.Device, Seq: ev.Seq, Kind: ev.Kind.String(), HLC: uint64(ev.HLC),
			Time: ev.HLC.Time().Format(time.RFC3339Nano), Body: body})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func uintParam(s string, def uint64) (uint64, error) {
	if s == "" {
		return def, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	if a.Health != nil {
		if err := a.Health(); err != nil {
			return &httpx.Error{Status: http.StatusServiceUnavailable, Msg: err.Error()}
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}
