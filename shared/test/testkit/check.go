package testkit

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Ledger records what a load generator was told: every write answered 2xx
// (acked) and every write attempted, per device, keyed by seq for acked
// writes and by a unique marker carried in the event body.
type Ledger struct {
	mu      sync.Mutex
	acked   map[string]map[uint64]string // device → seq → marker
	tried   map[string]int
	markers map[string]map[string]bool // device → marker → acked
	// reused notes seqs answered 2xx twice with different events (see
	// Record): device → "seq: first, then second".
	reused map[string][]string
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{acked: map[string]map[uint64]string{}, tried: map[string]int{}, markers: map[string]map[string]bool{},
		reused: map[string][]string{}}
}

// Tried counts an attempted write.
func (l *Ledger) Tried(device string) {
	l.mu.Lock()
	l.tried[device]++
	l.mu.Unlock()
}

// Acked records a write the edge answered 2xx with seq.
func (l *Ledger) Acked(device string, seq uint64, marker string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ackLocked(device, seq, marker)
}

func (l *Ledger) ackLocked(device string, seq uint64, marker string) {
	if l.acked[device] == nil {
		l.acked[device] = map[uint64]string{}
		l.markers[device] = map[string]bool{}
	}
	l.acked[device][seq] = marker
	l.markers[device][marker] = true
}

// Count is how many writes were acked for device.
func (l *Ledger) Count(device string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked[device])
}

// HubEvent is one event as the hub API serves it.
type HubEvent struct {
	Device string         `json:"device"`
	Seq    uint64         `json:"seq"`
	Kind   string         `json:"kind"`
	HLC    uint64         `json:"hlc"`
	Body   map[string]any `json:"body"`
}

// FetchEvents pages through GET /api/v1/events of one device.
func FetchEvents(ctx context.Context, hubURL, token, device string) ([]HubEvent, error) {
	var all []HubEvent
	var after uint64
	for {
		var page []HubEvent
		u := fmt.Sprintf("%s/api/v1/events?device=%s&after=%d&limit=10000", hubURL, url.QueryEscape(device), after)
		code, err := Do(ctx, "GET", u, token, nil, &page)
		if err != nil {
			return nil, err
		}
		if code == 404 {
			return nil, nil // the hub has not heard of the device yet
		}
		if code != 200 {
			return nil, fmt.Errorf("GET %s: status %d", u, code)
		}
		if len(page) == 0 {
			return all, nil
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// Verdict classifies every acked write of a device against what the hub
// holds.
type Verdict struct {
	Device     string
	Acked      int // writes answered 2xx
	Present    int // acked and present at the hub with the right body
	Lost       []uint64
	LostPrefix int // lost seqs below the first present one
	LostMiddle int
	LostTail   int // lost seqs above the last present one
	Unacked    int // present at the hub but never answered 2xx (fine)
	Duplicates int // a seq or a marker twice at the hub
	OutOfOrder int // the hub's seq order broken
	Mismatched int // seq present with another body than acked
	Gaps       int // missing seqs inside the hub's range (allowed only where telemetry was dropped)
	HubCount   int
	HubMaxSeq  uint64
}

// OK is true when nothing acked was lost and nothing was duplicated.
func (v Verdict) OK() bool {
	return len(v.Lost) == 0 && v.Duplicates == 0 && v.OutOfOrder == 0 && v.Mismatched == 0
}

func (v Verdict) String() string {
	s := fmt.Sprintf("%s: acked %d, present %d, lost %d (prefix %d, middle %d, tail %d), unacked-present %d, duplicates %d, out-of-order %d, mismatched %d, gaps %d, hub holds %d up to seq %d",
		v.Device, v.Acked, v.Present, len(v.Lost), v.LostPrefix, v.LostMiddle, v.LostTail, v.Unacked, v.Duplicates, v.OutOfOrder, v.Mismatched, v.Gaps, v.HubCount, v.HubMaxSeq)
	if len(v.Lost) > 0 {
		n := min(10, len(v.Lost))
		parts := make([]string, n)
		for i, s := range v.Lost[:n] {
			parts[i] = fmt.Sprint(s)
		}
		s += "; first lost seqs: " + strings.Join(parts, ",")
	}
	return s
}

// Check compares the ledger of device with the hub's events. marker picks
// the marker out of an event body (e.g. its resident id).
func (l *Ledger) Check(device string, hub []HubEvent, marker func(map[string]any) string) Verdict {
	l.mu.Lock()
	acked := l.acked[device]
	markers := l.markers[device]
	l.mu.Unlock()
	v := Verdict{Device: device, Acked: len(acked), HubCount: len(hub)}
	seenSeq := map[uint64]string{}
	seenMarker := map[string]bool{}
	var prev uint64
	for _, e := range hub {
		if e.Seq <= prev {
			v.OutOfOrder++
		}
		if e.Seq > prev+1 && prev != 0 {
			v.Gaps += int(e.Seq - prev - 1)
		}
		prev = max(prev, e.Seq)
		m := marker(e.Body)
		if _, dup := seenSeq[e.Seq]; dup || (m != "" && seenMarker[m]) {
			v.Duplicates++
		}
		seenSeq[e.Seq] = m
		if m != "" {
			seenMarker[m] = true
		}
		if !markers[m] {
			v.Unacked++
		}
	}
	v.HubMaxSeq = prev
	var minPresent, maxPresent uint64
	for seq := range seenSeq {
		if minPresent == 0 || seq < minPresent {
			minPresent = seq
		}
		maxPresent = max(maxPresent, seq)
	}
	for seq, m := range acked {
		got, ok := seenSeq[seq]
		switch {
		case !ok:
			v.Lost = append(v.Lost, seq)
			switch {
			case minPresent == 0 || seq < minPresent:
				v.LostPrefix++
			case seq > maxPresent:
				v.LostTail++
			default:
				v.LostMiddle++
			}
		case got != m:
			v.Mismatched++
		default:
			v.Present++
		}
	}
	sort.Slice(v.Lost, func(i, j int) bool { return v.Lost[i] < v.Lost[j] })
	return v
}
