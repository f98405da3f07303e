package testkit

import (
	"sync"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
)

// MemState is the hub's merged state without the store and the downlink:
// operator decisions and edge events go straight into a merge.State. It
// serves the tests of the operator API and its accounts, which need the
// state's Read and Record and nothing of its persistence.
type MemState struct {
	mu  sync.Mutex
	m   *merge.State
	seq uint64
}

// NewMemState returns an empty state.
func NewMemState() *MemState { return &MemState{m: merge.New()} }

// Read runs fn with the state held.
func (s *MemState) Read(fn func(m *merge.State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.m)
}

// Record validates bodies and applies them as the hub's own events, in
// order, each with the next hub seq.
func (s *MemState) Record(bodies ...event.Body) ([]event.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []event.Event
	for _, b := range bodies {
		if err := b.Validate(); err != nil {
			return nil, err
		}
		s.seq++
		ev, err := event.NewEvent("hub", s.seq, hlc.New(1_750_000_000_000+int64(s.seq), 0), b)
		if err != nil {
			return nil, err
		}
		if _, err := s.m.Apply(merge.Fact{Event: ev}); err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// Apply merges an edge's event of site as if it had arrived in a batch.
func (s *MemState) Apply(site string, ev event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.m.Apply(merge.Fact{Site: site, Event: ev})
	return err
}
