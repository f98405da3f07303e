package kiosk

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"linli/shared/httpx"
	"linli/shared/merge"
	"linli/shared/wire"
)

// alarmGroups are the names the resident-alarms setting takes, each the
// alarm kinds it shows.
var alarmGroups = map[string][]string{
	"fire": {"smoke", "heat"}, "water": {"water"}, "forced": {"forced"}, "held_open": {"held_open"},
}

// DefaultAlarmKinds are the alarms residents see unless the site says
// otherwise: fire and water. A forced door is a matter for the property
// office, not a reason to alarm a lobby.
var DefaultAlarmKinds = []string{"heat", "smoke", "water"}

// ParseAlarmKinds reads the resident-alarms setting ("fire,water") into
// the alarm kinds it covers.
func ParseAlarmKinds(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		kinds, ok := alarmGroups[name]
		if !ok {
			return nil, fmt.Errorf("%q is not one of fire, water, forced, held_open", name)
		}
		out = append(out, kinds...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// AlarmOut is an alarm as the kiosk serves it: kinds and places, never
// sentences — the UI words them from its catalogues in the resident's
// language.
type AlarmOut struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Severity  string    `json:"severity"`
	Building  string    `json:"building,omitempty"`
	Place     string    `json:"place,omitempty"`
	Since     time.Time `json:"since"`
	Active    bool      `json:"active"`
	Momentary bool      `json:"momentary,omitempty"`
}

// Alarms lists the alarms residents of the whole site should see now, most
// severe first: every building's, since smoke in one building matters to
// the next (公共安全互助). An alarm shows while its source is active (or,
// for a momentary one such as a forced door, until an operator clears it)
// and its kind is one the site shows residents.
func (m *Mirror) Alarms() ([]AlarmOut, error) {
	all, err := decodeAll[merge.AlarmView](m.Rep, wire.EntityAlarm)
	if err != nil {
		return nil, err
	}
	kinds := m.AlarmKinds
	if kinds == nil {
		kinds = DefaultAlarmKinds
	}
	slices.SortFunc(all, merge.CompareAlarms)
	out := []AlarmOut{}
	for _, a := range all {
		if !a.Open || !(a.Active || a.Momentary) || !slices.Contains(kinds, a.Kind) {
			continue
		}
		out = append(out, AlarmOut{ID: a.ID, Kind: a.Kind, Severity: a.Severity, Building: a.Building, Place: a.Place,
			Since: a.First.Time().UTC(), Active: a.Active, Momentary: a.Momentary})
	}
	return out, nil
}

// AlarmLister lists the alarms to show.
type AlarmLister interface {
	Alarms() ([]AlarmOut, error)
}

// AlarmFeed tells the kiosk's screens at once when the alarms change: a
// page holds a server-sent-events stream open and gets the whole list
// again on every change the replica applies, so an alarm is on screen as
// soon as the hub's change reaches the kiosk, not at the next poll.
type AlarmFeed struct {
	list AlarmLister

	mu     sync.Mutex
	subs   map[chan struct{}]bool
	closed chan struct{}
	once   sync.Once
}

// NewAlarmFeed returns a feed of list's alarms.
func NewAlarmFeed(list AlarmLister) *AlarmFeed {
	return &AlarmFeed{list: list, subs: map[chan struct{}]bool{}, closed: make(chan struct{})}
}

// Changed wakes every stream if cs holds an alarm; hook it to the
// replica's AfterApply.
func (f *AlarmFeed) Changed(cs []wire.Change) {
	if !slices.ContainsFunc(cs, func(c wire.Change) bool { return c.Entity == wire.EntityAlarm }) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending already; it reads the latest list
		}
	}
}

// Close ends every stream (the HTTP server's shutdown waits for them).
func (f *AlarmFeed) Close() { f.once.Do(func() { close(f.closed) }) }

func (f *AlarmFeed) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs[ch] = true
	f.mu.Unlock()
	return ch, func() { f.mu.Lock(); delete(f.subs, ch); f.mu.Unlock() }
}

// streamPing keeps an idle stream alive through proxies and lets the page
// see a dead connection.
const streamPing = 15 * time.Second

func (a *Handlers) getAlarms(w http.ResponseWriter, r *http.Request) error {
	if a.Alarms == nil {
		httpx.WriteJSON(w, http.StatusOK, []AlarmOut{})
		return nil
	}
	list, err := a.Alarms.list.Alarms()
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, list)
	return nil
}

// streamAlarms serves GET /api/v1/alarms/stream: event "alarms" with the
// whole list at once and again on every change.
func (a *Handlers) streamAlarms(w http.ResponseWriter, r *http.Request) error {
	if a.Alarms == nil {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "this kiosk has no alarm feed"}
	}
	rc := http.NewResponseController(w)
	// The server's write timeout is for answers, not for a stream.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("alarm stream: %w", err)
	}
	wake, done := a.Alarms.subscribe()
	defer done()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func() error {
		list, err := a.Alarms.list.Alarms()
		if err != nil {
			a.Logger.Error("alarm stream: read alarms", "err", err)
			return nil // the next change tries again; the page keeps the last list
		}
		data, err := json.Marshal(list)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: alarms\ndata: %s\n\n", data); err != nil {
			return err
		}
		return rc.Flush()
	}
	ping := time.NewTicker(streamPing)
	defer ping.Stop()
	for err := send(); err == nil; {
		select {
		case <-r.Context().Done():
			return nil
		case <-a.Alarms.closed:
			return nil
		case <-wake:
			err = send()
		case <-ping.C:
			if _, err = fmt.Fprint(w, ": ping\n\n"); err == nil {
				err = rc.Flush()
			}
		}
	}
	return nil // the page went away; it reconnects by itself
}
