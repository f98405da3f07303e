// Package loadgen is the one load generator of the tests and the
// benchmark: a pool of writers (a count, a duration, a pace), the events
// tests write to an edge, each carrying a unique marker, and an optional
// ledger that records every answered write for the exactly-once checks.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config says how many writers run and when they stop.
type Config struct {
	Workers int           // concurrent writers (default 8)
	Max     int64         // stop after this many writes in all (0: no limit)
	For     time.Duration // stop after this long (0: no limit)
	Rate    float64       // writes a second over all workers (0: unpaced)
	Pause   time.Duration // between a worker's writes (default none)

	// For Start: the kinds of event written, cycled through by write
	// number (default check-ins), and the marker prefix (default "R").
	Kinds  []string
	Prefix string
}

// Op is write number i (from 1, unique over all workers) by worker w (from
// 0). It returns false to end that worker (its connection is unusable).
type Op func(ctx context.Context, w int, i int64) bool

// Pool runs an Op from several goroutines until it is stopped, ctx ends,
// Max writes are made or For has passed.
type Pool struct {
	cancel context.CancelFunc
	ticker *time.Ticker // with Rate
	wg     sync.WaitGroup
	next   atomic.Int64
}

// Go starts c.Workers goroutines calling op.
func Go(ctx context.Context, c Config, op Op) *Pool {
	if c.Workers <= 0 {
		c.Workers = 8
	}
	var cancel context.CancelFunc
	if c.For > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.For)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	p := &Pool{cancel: cancel}
	var tick <-chan time.Time
	if c.Rate > 0 {
		p.ticker = time.NewTicker(time.Duration(float64(time.Second) / c.Rate))
		tick = p.ticker.C
	}
	for w := range c.Workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for ctx.Err() == nil {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				i := p.next.Add(1)
				if c.Max > 0 && i > c.Max {
					return
				}
				if !op(ctx, w, i) {
					return
				}
				if c.Pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(c.Pause):
					}
				}
			}
		}()
	}
	return p
}

// Wait waits until every worker has ended (Max or For reached, or every
// Op said to stop).
func (p *Pool) Wait() {
	p.wg.Wait()
	p.cancel()
	if p.ticker != nil {
		p.ticker.Stop()
	}
}

// Stop ends the writers and waits for them.
func (p *Pool) Stop() { p.cancel(); p.Wait() }

// Load writes to an edge from a Pool until stopped, tolerating errors
// (the edge may be down), and counts the answers.
type Load struct {
	pool   *Pool
	ok     atomic.Int64
	failed atomic.Int64
	codes  sync.Map // status code → *atomic.Int64
}

// Start writes c.Kinds in turn to the edge at url (device is its id),
// recording each write in ledger when it is not nil.
func Start(url, device string, ledger Ledger, c Config) *Load {
	if len(c.Kinds) == 0 {
		c.Kinds = []string{Checkin}
	}
	if c.Prefix == "" {
		c.Prefix = "R"
	}
	l := &Load{}
	l.pool = Go(context.Background(), c, func(ctx context.Context, _ int, i int64) bool {
		kind := c.Kinds[int(i)%len(c.Kinds)]
		w, err := Write(ctx, Client, url, device, ledger, kind, c.Prefix, i)
		switch {
		case err == nil && w.Code/100 == 2:
			l.ok.Add(1)
		default:
			l.failed.Add(1)
			if err != nil && ctx.Err() == nil {
				// The edge is down: do not spin.
				time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
			}
		}
		n, _ := l.codes.LoadOrStore(w.Code, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		return true
	})
	return l
}

// Wait waits for a load with Max or For to finish.
func (l *Load) Wait() { l.pool.Wait() }

// Stop ends the load and waits for its workers.
func (l *Load) Stop() { l.pool.Stop() }

// OK is how many writes were answered 2xx so far.
func (l *Load) OK() int64 { return l.ok.Load() }

// Failed is how many writes failed or were refused so far.
func (l *Load) Failed() int64 { return l.failed.Load() }

// Codes counts answers by status code (0: no answer).
func (l *Load) Codes() map[int]int64 {
	out := map[int]int64{}
	l.codes.Range(func(k, v any) bool { out[k.(int)] = v.(*atomic.Int64).Load(); return true })
	return out
}

// Kinds of events Write makes.
const (
	Checkin = "checkin"
	Reading = "reading"
	Access  = "access"
	Report  = "report"
	// LargeReport is a report with a 1,900-character description: its
	// stored value is above the small profile's value threshold.
	LargeReport = "report-large"
)

// Request is write i of kind: the edge path, the JSON body and the marker
// built from prefix and i that the stored event carries (a check-in's
// resident, a reading's sensor, an access event's door — its card is
// stored only as a pseudonym — a report's unit).
func Request(kind, prefix string, i int64) (path string, body []byte, marker string, err error) {
	marker = prefix + strconv.FormatInt(i, 10)
	var b any
	switch kind {
	case Checkin:
		path, b = "/api/v1/checkins", map[string]string{"resident": marker, "activity": "A1"}
	case Reading:
		path, b = "/api/v1/readings", map[string]any{"sensor": marker, "kind": "temperature", "value": 21.5}
	case Access:
		path, b = "/api/v1/access", map[string]string{"door": marker, "credential": "C" + strconv.FormatInt(i, 10), "result": "granted"}
	case Report:
		path, b = "/api/v1/reports", map[string]string{"category": "facilities", "title": "lamp out", "building": "B1", "unit": marker}
	case LargeReport:
		path, b = "/api/v1/reports", map[string]string{"category": "facilities", "title": "lamp out", "building": "B1", "unit": marker,
			"description": strings.Repeat("the stairwell lamp on floor 3 is out again. ", 43)}
	default:
		return "", nil, "", fmt.Errorf("unknown write kind %q", kind)
	}
	body, err = json.Marshal(b)
	return path, body, marker, err
}

// Marker picks the marker out of an event body as the hub returns it.
func Marker(body map[string]any) string {
	for _, k := range []string{"resident", "sensor", "door", "unit"} {
		if s, ok := body[k].(string); ok {
			return s
		}
	}
	return ""
}

// Ledger records writes for an exactly-once check (testkit.Ledger is one).
type Ledger interface {
	// Tried counts a write about to be sent.
	Tried(device string)
	// Record notes a write the edge answered 2xx with seq.
	Record(device string, seq uint64, marker string)
}

// Written is the answer to one write.
type Written struct {
	Code   int
	Seq    uint64
	Marker string
	Body   string // the answer's error, for messages
}

// Client keeps a connection per writer alive (the default transport keeps
// two, and re-dialling costs more than the write).
var Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
	MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}}

// Write posts write i of kind to the edge at url (device is its id) and
// records it in ledger (which may be nil): tried always, and acked when
// answered 2xx.
func Write(ctx context.Context, c *http.Client, url, device string, ledger Ledger, kind, prefix string, i int64) (Written, error) {
	path, body, marker, err := Request(kind, prefix, i)
	if err != nil {
		return Written{}, err
	}
	if ledger != nil {
		ledger.Tried(device)
	}
	code, ans, err := post(ctx, c, url+path, body)
	w := Written{Code: code, Seq: ans.Seq, Marker: marker, Body: ans.Error}
	if err != nil {
		return w, err
	}
	if code/100 == 2 && ledger != nil {
		ledger.Record(device, ans.Seq, marker)
	}
	return w, nil
}

type answer struct {
	Seq   uint64 `json:"seq"`
	Error string `json:"error"`
}

func post(ctx context.Context, c *http.Client, url string, body []byte) (int, answer, error) {
	var ans answer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, ans, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, ans, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, ans, err
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &ans); err != nil {
			return resp.StatusCode, ans, fmt.Errorf("decode POST %s answer %q: %w", url, raw, err)
		}
	}
	return resp.StatusCode, ans, nil
}
