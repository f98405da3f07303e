package api

import (
	"linli/hub/stream"
	"linli/shared/event"
	"linli/shared/merge"
)

// StreamingState publishes every operator decision on the stream once it
// is recorded, so the dashboards of other operators see it live.
type StreamingState struct {
	State
	Stream *stream.Stream
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
