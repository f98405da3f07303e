package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/httpx"
)

// serve is a real HTTP server for s; wrap, when set, wraps each
// request's ResponseWriter.
func serve(t *testing.T, s *Stream, wrap func(http.ResponseWriter) http.ResponseWriter) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wrap != nil {
			w = wrap(w)
		}
		if err := s.Serve(w, r, ParseFilter(r, []string{r.URL.Query().Get("site")})); err != nil {
			httpx.WriteError(w, err)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close) // before srv.Close, which waits for open streams
	return srv
}

// client is one subscriber's stream, read as the dashboard reads it.
type client struct {
	t    *testing.T
	r    *bufio.Reader
	body io.Closer
}

// open subscribes with query and returns once the stream is open.
func open(t *testing.T, srv *httptest.Server, query string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("subscribe ?%s: %d %s", query, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &client{t: t, r: bufio.NewReader(resp.Body), body: resp.Body}
	for line := ""; line != ": open\n"; {
		if line, err = c.r.ReadString('\n'); err != nil {
			t.Fatalf("stream ?%s did not open: %v", query, err)
		}
	}
	return c
}

// next reads the next event: its SSE event name and data.
func (c *client) next() (kind, data string) {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read stream: %v", err)
		}
		if k, ok := strings.CutPrefix(line, "event: "); ok {
			kind = strings.TrimSpace(k)
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			return kind, strings.TrimSpace(d)
		}
	}
}

// nextEvent reads the next stream event, failing on anything else.
func (c *client) nextEvent() Event {
	c.t.Helper()
	kind, data := c.next()
	var e Event
	if err := json.Unmarshal([]byte(data), &e); err != nil || e.Kind != kind {
		c.t.Fatalf("event %q %s: %v", kind, data, err)
	}
	return e
}

func mk(t *testing.T, device string, seq uint64, body event.Body) event.Event {
	t.Helper()
	ev, err := event.NewEvent(device, seq, hlc.New(1_740_000_000_000+int64(seq), 0), body)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func reading(t *testing.T, seq uint64, building string) event.Event {
	return mk(t, "gw-1", seq, &event.Reading{Sensor: "t-1", Type: "temperature", Value: 21, Building: building})
}

// Every subscriber gets each published event its filter keeps, in order,
// numbered by the stream.
func TestFanOutToEachSubscribersFilter(t *testing.T) {
	s := New(nil)
	s.Publish("s1", []event.Event{reading(t, 1, "B1")}) // nobody listens: dropped, never blocks
	srv := serve(t, s, nil)
	tests := []struct {
		query string
		want  []uint64 // seqs
	}{
		{"", []uint64{2, 3, 4, 5}},
		{"site=s1", []uint64{2, 3, 4}},
		{"site=s2", []uint64{5}},
		{"building=B3", []uint64{3}},
		{"kind=alarm", []uint64{4}},
		{"device=kiosk-1&kind=alarm,reading", nil},
	}
	clients := make([]*client, len(tests))
	for i, tt := range tests {
		clients[i] = open(t, srv, tt.query)
	}
	s.Publish("s1", []event.Event{reading(t, 2, "B1"), reading(t, 3, "B3"),
		mk(t, "gw-1", 4, &event.Alarm{Sensor: "B1-smoke-1", Type: "smoke", Active: true, Building: "B1"})})
	s.Publish("s2", []event.Event{reading(t, 5, "B1")})
	// A last event of each site that every filter keeps closes each
	// expectation.
	last := func(seq uint64) []event.Event {
		return []event.Event{mk(t, "kiosk-1", seq, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: true, Building: "B3"})}
	}
	s.Publish("s1", last(6))
	s.Publish("s2", last(7))
	for i, tt := range tests {
		var got []uint64
		for {
			e := clients[i].nextEvent()
			if e.Device == "kiosk-1" {
				break
			}
			got = append(got, e.Seq)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("?%s got seqs %v, want %v", tt.query, got, tt.want)
		}
	}
}

// gated holds a stream's flushes after the first (the stream opening)
// until the test lets them go, as a client that stopped reading would.
type gated struct {
	http.ResponseWriter
	flushes int
	held    chan struct{} // a flush is waiting
	release chan struct{}
}

func (g *gated) Flush() {
	g.flushes++
	if g.flushes == 2 {
		g.held <- struct{}{}
		<-g.release
	}
	_ = http.NewResponseController(g.ResponseWriter).Flush()
}

// A subscriber that falls behind loses what does not fit its buffer and
// is told how many; publishing never waits for it, and the others are not
// held back by it (each gets every event or is told it lost it).
func TestSlowSubscriberLosesEventsAndIsTold(t *testing.T) {
	s := New(nil)
	g := &gated{held: make(chan struct{}, 1), release: make(chan struct{})}
	slow := open(t, serve(t, s, func(w http.ResponseWriter) http.ResponseWriter { g.ResponseWriter = w; return g }), "")
	fast := open(t, serve(t, s, nil), "")
	var once sync.Once
	letGo := func() { once.Do(func() { close(g.release) }) }
	t.Cleanup(letGo) // a failing test must not leave the server waiting

	s.Publish("s1", []event.Event{reading(t, 1, "B1")})
	select {
	case <-g.held: // the slow stream has taken event 1 and is stuck sending it
	case <-time.After(30 * time.Second):
		t.Fatal("the slow stream never tried to send its first event")
	}
	const lost = 7
	var evs []event.Event
	for seq := uint64(2); seq < 2+Buffer+lost; seq++ {
		evs = append(evs, reading(t, seq, "B1"))
	}
	published := make(chan struct{})
	go func() { s.Publish("s1", evs); close(published) }()
	select {
	case <-published:
	case <-time.After(30 * time.Second):
		t.Fatal("Publish waited for a subscriber that does not read")
	}
	// The fast subscriber gets the events in order, and any it lost (it
	// reads while the whole batch is published at once) it is told of.
	var got, dropped, last uint64
	for got+dropped < 1+Buffer+lost {
		kind, data := fast.next()
		if kind == "lagged" {
			var l struct{ Dropped uint64 }
			if err := json.Unmarshal([]byte(data), &l); err != nil || l.Dropped == 0 {
				t.Fatalf("lagged %s: %v", data, err)
			}
			dropped += l.Dropped
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(data), &e); err != nil || e.Seq <= last {
			t.Fatalf("fast subscriber: %s %s after seq %d (%v)", kind, data, last, err)
		}
		got, last = got+1, e.Seq
	}

	letGo()
	if e := slow.nextEvent(); e.Seq != 1 {
		t.Fatalf("slow subscriber's first event: seq %d, want 1", e.Seq)
	}
	if kind, data := slow.next(); kind != "lagged" || data != `{"dropped":7}` {
		t.Fatalf("after falling behind: %s %s, want lagged with dropped 7", kind, data)
	}
	for want := uint64(2); want < 2+Buffer; want++ {
		if e := slow.nextEvent(); e.Seq != want {
			t.Fatalf("slow subscriber: seq %d, want %d (the buffered ones, in order)", e.Seq, want)
		}
	}
}

// Closing the stream ends every open subscription, and a subscription
// after that is refused with 503 rather than left hanging.
func TestCloseEndsStreamsAndRefusesNewOnes(t *testing.T) {
	s := New(nil)
	srv := serve(t, s, nil)
	a, b := open(t, srv, ""), open(t, srv, "site=s1")
	s.Close()
	for _, c := range []*client{a, b} {
		if _, err := io.ReadAll(c.r); err != nil {
			t.Fatalf("a closed stream should end cleanly: %v", err)
		}
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("subscribing to a closed stream: %d, want 503", resp.StatusCode)
	}
	s.Publish("s1", []event.Event{reading(t, 1, "B1")}) // after Close: a no-op, not a panic
	if !errors.Is(s.Serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), Filter{}), ErrClosed) {
		t.Fatal("Serve on a closed stream: want ErrClosed")
	}
}
