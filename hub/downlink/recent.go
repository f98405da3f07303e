package downlink

// recentMax and recentEntries bound what recentBodies keeps: a site's
// busy entities (the activities check-ins change, the reports votes
// change) stay, an old report changed once is read back from the store.
const (
	recentMax     = 16 << 20
	recentEntries = 100_000
)

// recentBodies keeps the newest committed change of the entities changed
// lately, the base of their next delta: without it each entity a commit
// changes again cost a read of the store inside the commit (on
// PostgreSQL a transaction of its own). An entry is used only while its
// seq is the entity's newest, so one left behind by a change the log
// took from elsewhere (LoadSite) is never a wrong base. Guarded by the
// Log's mu.
type recentBodies struct {
	bodies map[string]map[string]base // site → entity key → change
	order  []recentKey                // insertion order, for eviction
	bytes  int
}

type recentKey struct{ site, ek string }

func (r *recentBodies) get(site, ek string) (base, bool) {
	bs, ok := r.bodies[site][ek]
	return bs, ok
}

func (r *recentBodies) put(site, ek string, bs base) {
	if r.bodies == nil {
		r.bodies = map[string]map[string]base{}
	}
	m := r.bodies[site]
	if m == nil {
		m = map[string]base{}
		r.bodies[site] = m
	}
	if old, ok := m[ek]; ok {
		r.bytes -= len(old.body)
	} else {
		// A key its site's drop left in order may be there twice; the
		// first to go evicts it early, which costs only a read.
		r.order = append(r.order, recentKey{site, ek})
	}
	m[ek] = bs
	r.bytes += len(bs.body)
	for (r.bytes > recentMax || len(r.order) > recentEntries) && len(r.order) > 0 {
		k := r.order[0]
		r.order = r.order[1:]
		if old, ok := r.bodies[k.site][k.ek]; ok {
			r.bytes -= len(old.body)
			delete(r.bodies[k.site], k.ek)
		}
	}
}

// dropSite forgets site's bodies.
func (r *recentBodies) dropSite(site string) {
	for _, bs := range r.bodies[site] {
		r.bytes -= len(bs.body)
	}
	delete(r.bodies, site)
}
