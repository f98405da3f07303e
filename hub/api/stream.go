package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// StreamEvent is one event on the live stream: what an edge recorded or
// an operator decided, as it reaches the hub.
type StreamEvent struct {
	ID       uint64    `json:"id"` // the stream's own counter, for SSE ids
	Site     string    `json:"site"`
	Device   string    `json:"device"`
	Seq      uint64    `json:"seq"`
	Kind     string    `json:"kind"`
	Time     time.Time `json:"time"`
	Building string    `json:"building,omitempty"`
	Body     any       `json:"body"`
}

// Stream fans committed events out to live subscribers (the dashboard's
// server-sent events). Publishing never blocks the committer: a subscriber
// that falls behind loses events and is told how many.
type Stream struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	next   uint64
	closed bool
}

type subscriber struct {
	ch      chan StreamEvent
	keep    func(*StreamEvent) bool
	dropped int
}

// streamBuffer is how many events a subscriber may lag behind.
const streamBuffer = 512

// NewStream returns a stream without subscribers.
func NewStream() *Stream { return &Stream{subs: map[*subscriber]struct{}{}} }

// Publish offers events of site to every subscriber. It is the ingest's
// OnEvents hook, so it returns at once.
func (s *Stream) Publish(site string, evs []event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.subs) == 0 || s.closed {
		return
	}
	for i := range evs {
		ev := &evs[i]
		body, err := ev.Decode()
		if err != nil {
			continue // stored events decode; a bad one is not worth a line here
		}
		s.next++
		se := StreamEvent{ID: s.next, Site: site, Device: ev.Device, Seq: ev.Seq, Kind: ev.Kind.String(),
			Time: ev.HLC.Time().UTC(), Building: buildingOf(body), Body: body}
		for sub := range s.subs {
			if !sub.keep(&se) {
				continue
			}
			select {
			case sub.ch <- se:
			default:
				sub.dropped++
			}
		}
	}
}

// Close ends every subscription (the server is shutting down).
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for sub := range s.subs {
		close(sub.ch)
		delete(s.subs, sub)
	}
}

func (s *Stream) subscribe(keep func(*StreamEvent) bool) (*subscriber, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	sub := &subscriber{ch: make(chan StreamEvent, streamBuffer), keep: keep}
	s.subs[sub] = struct{}{}
	return sub, true
}

func (s *Stream) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		close(sub.ch)
	}
}

// takeDropped returns and resets how many events sub lost.
func (s *Stream) takeDropped(sub *subscriber) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := sub.dropped
	sub.dropped = 0
	return n
}

func buildingOf(b event.Body) string {
	switch b := b.(type) {
	case *event.Report:
		return b.Building
	case *event.Access:
		return b.Building
	case *event.Reading:
		return b.Building
	case *event.Alarm:
		return b.Building
	case *event.ReportFile:
		return b.Report.Building
	}
	return ""
}

// streamHeartbeat keeps idle connections (and proxies) from timing out.
const streamHeartbeat = 15 * time.Second

// stream serves GET /api/v1/stream as server-sent events. Filters:
// site, kind (comma-separated event kinds), building, device. Each event
// is `event: <kind>` with the StreamEvent as data; a `lagged` event says
// how many were lost when the client fell behind.
func (a *API) stream(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	sites, err := a.Scope(r, q.Get("site"))
	if err != nil {
		return err
	}
	var kinds []string
	if k := q.Get("kind"); k != "" {
		kinds = strings.Split(k, ",")
	}
	building, device := q.Get("building"), q.Get("device")
	keep := func(e *StreamEvent) bool {
		return (sites[0] == "" || slices.Contains(sites, e.Site)) &&
			(len(kinds) == 0 || slices.Contains(kinds, e.Kind)) &&
			(building == "" || e.Building == building) && (device == "" || e.Device == device)
	}
	sub, ok := a.Stream.subscribe(keep)
	if !ok {
		return &httpx.Error{Status: http.StatusServiceUnavailable, Msg: "the hub is shutting down"}
	}
	defer a.Stream.unsubscribe(sub)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The first write tells the browser the stream is open, and how soon
	// to come back after a drop.
	if _, err := fmt.Fprint(w, "retry: 2000\n: open\n\n"); err != nil {
		return nil
	}
	if err := rc.Flush(); err != nil {
		return nil
	}
	beat := time.NewTicker(streamHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
		case e, ok := <-sub.ch:
			if !ok {
				return nil
			}
			if n := a.Stream.takeDropped(sub); n > 0 {
				if _, err := fmt.Fprintf(w, "event: lagged\ndata: {\"dropped\":%d}\n\n", n); err != nil {
					return nil
				}
			}
			data, err := json.Marshal(e)
			if err != nil {
				a.Logger.Warn("encode stream event", "err", err)
				continue
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Kind, data); err != nil {
				return nil
			}
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

// StreamingState publishes every operator decision on the stream once it
// is recorded, so the dashboards of other operators see it live.
type StreamingState struct {
	State
	Stream *Stream
}

// Record records and then publishes.
func (s StreamingState) Record(bodies ...event.Body) ([]event.Event, error) {
	evs, err := s.State.Record(bodies...)
	if err != nil {
		return nil, err
	}
	bySite := map[string][]event.Event{}
	s.State.Read(func(m *merge.State) {
		for i, b := range bodies {
			if i < len(evs) {
				site := m.DecisionSite(b)
				bySite[site] = append(bySite[site], evs[i])
			}
		}
	})
	for site, es := range bySite {
		s.Stream.Publish(site, es)
	}
	return evs, nil
}
