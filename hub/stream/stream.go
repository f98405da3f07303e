// Package stream is the hub's live event stream: events fan out from
// ingest's commits and operators' decisions to subscribers, each with its
// own filter and buffer, and are served as server-sent events (the
// dashboard's GET /api/v1/stream). Publishing never waits for a
// subscriber; one that falls behind loses events and is told how many.
package stream

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"linli/shared/event"
	"linli/shared/httpx"
)

// Event is one event on the live stream: what an edge recorded or
// an operator decided, as it reaches the hub.
type Event struct {
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
	log *slog.Logger

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	next   uint64
	closed bool
}

type subscriber struct {
	ch      chan Event
	keep    func(*Event) bool
	dropped int
}

// Buffer is how many events a subscriber may lag behind.
const Buffer = 512

// New returns a stream without subscribers; log (nil: discarded) takes
// what cannot be sent.
func New(log *slog.Logger) *Stream {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stream{log: log, subs: map[*subscriber]struct{}{}}
}

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
		se := Event{ID: s.next, Site: site, Device: ev.Device, Seq: ev.Seq, Kind: ev.Kind.String(),
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

func (s *Stream) subscribe(keep func(*Event) bool) (*subscriber, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	sub := &subscriber{ch: make(chan Event, Buffer), keep: keep}
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

// heartbeat keeps idle connections (and proxies) from timing out.
const heartbeat = 15 * time.Second

// Filter picks the events a subscriber gets; an empty field matches
// every event.
type Filter struct {
	Sites    []string // the sites the caller may see; nil or [""]: all
	Kinds    []string // event kinds
	Building string
	Device   string
}

// ParseFilter reads ?kind= (comma-separated event kinds), ?building= and
// ?device= of r; the sites, which depend on who asks, are the caller's.
func ParseFilter(r *http.Request, sites []string) Filter {
	q := r.URL.Query()
	f := Filter{Sites: sites, Building: q.Get("building"), Device: q.Get("device")}
	if k := q.Get("kind"); k != "" {
		f.Kinds = strings.Split(k, ",")
	}
	return f
}

func (f Filter) keep(e *Event) bool {
	return (len(f.Sites) == 0 || f.Sites[0] == "" || slices.Contains(f.Sites, e.Site)) &&
		(len(f.Kinds) == 0 || slices.Contains(f.Kinds, e.Kind)) &&
		(f.Building == "" || e.Building == f.Building) && (f.Device == "" || e.Device == f.Device)
}

// ErrClosed answers a subscription to a stream that has been closed.
var ErrClosed = &httpx.Error{Status: http.StatusServiceUnavailable, Msg: "the hub is shutting down"}

// Serve streams the events f keeps to w as server-sent events until the
// client goes or the stream closes. Each event is `event: <kind>` with
// the Event as data; a `lagged` event says how many were lost when the
// client fell behind. Its only error is ErrClosed, before anything is
// written.
func (s *Stream) Serve(w http.ResponseWriter, r *http.Request, f Filter) error {
	sub, ok := s.subscribe(f.keep)
	if !ok {
		return ErrClosed
	}
	defer s.unsubscribe(sub)
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
	beat := time.NewTicker(heartbeat)
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
			if n := s.takeDropped(sub); n > 0 {
				if _, err := fmt.Fprintf(w, "event: lagged\ndata: {\"dropped\":%d}\n\n", n); err != nil {
					return nil
				}
			}
			data, err := json.Marshal(e)
			if err != nil {
				s.log.Warn("encode stream event", "err", err)
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
