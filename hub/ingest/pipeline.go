package ingest

import (
	"slices"
	"time"

	"linli/hub/store"
	"linli/shared/event"
)

// Pipeliner is an Applier that can fold a group in while the group before
// it commits. Apply may then be called again before the previous group's
// Committed or Aborted; those still come once per Apply, in Apply's order.
// An Aborted means every group applied after it is aborted too (it was
// folded on top of the failed one), and the Applier must come back to
// what is committed by the last of those Aborted calls.
type Pipeliner interface {
	Applier
	// Overlap reports whether the next group may be folded in before the
	// groups in flight are committed. false lets the pipeline drain: a
	// writer of the merged state other than ingest is waiting, or work
	// that runs only once nothing is in flight (the seat policy) is due.
	Overlap() bool
}

// The committer is two stages. The preparer groups decoded batches,
// deduplicates them against the device records, fills a store batch and
// folds the new events into the merged state; the writer commits the
// batch, then updates the live device records, acks and tells the hooks.
// While the writer commits group N the preparer prepares group N+1, so
// merging and PostgreSQL's work on the commit overlap instead of taking
// turns. Why this acks only what is durable, and stores every event once:
//
//   - One writer commits the groups one after the other, in the order
//     they were prepared, and acks a group only after its own commit
//     returned. Commits of a site keep their order, and each is fenced in
//     its own transaction as before.
//   - Group N+1 is built on group N's outcome before it is known: its
//     duplicates are judged against N's device records (pending) and its
//     events are folded into a merged state that holds N's. It is marked
//     chained. If N's commit fails, nothing of N is stored, so N+1's
//     records and merged state describe events that are not there: the
//     writer fails N+1 too, without committing it (Aborted, its records
//     dirty again, nothing acked). The Applier's last Aborted rebuilds the
//     merged state from the store, which holds neither.
//   - Only one group waits while one commits (the hand-over is
//     unbuffered), and after a failure the preparer waits for the group
//     in flight to end before it prepares the next one, so the next group
//     is built on what is committed and a failure fails at most the group
//     chained to it.
//   - A group N+1 not chained was prepared after N ended: from the live
//     records and the committed merged state.
//   - The acks come from the device records of the group's own commit,
//     which hold only ranges covered by that commit and the commits before
//     it; so an event is never acked before the commit that stores it
//     returned, and a failed group's events are acked only after the
//     edge's resend is committed.

// pendingRecord is a device record as a prepared group leaves it.
type pendingRecord struct {
	rec *store.DeviceRecord
	by  *prepared
}

// prepared is a group ready to commit.
type prepared struct {
	group     []decoded
	b         store.Batch
	work      map[string]*store.DeviceRecord
	newBySite map[string][]event.Event
	applied   bool
	// chained: prepared while the group before it was in flight, on its
	// device records and merged state.
	chained           bool
	events            int // events in the group's batches
	fresh, dups, quar uint64
	done              chan struct{} // closed when the writer is done with it
}

func (p *prepared) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// commitLoop groups decoded batches and hands them to the writer; it
// returns once the writer has committed all of them.
func (in *Ingest) commitLoop() {
	// The ticker persists presence changes (status, hello) when no events
	// arrive to carry them.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	handoff := make(chan *prepared)
	acks := make(chan ackOf, ackQueue)
	writerDone, ackerDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(ackerDone); in.ackLoop(acks) }()
	go func() { defer close(writerDone); defer close(acks); in.writeLoop(handoff, acks) }()
	defer func() { close(handoff); <-writerDone; <-ackerDone }()
	var last *prepared
	send := func(group []decoded) {
		chained := last != nil && !last.ended()
		if chained && (in.lastFailed.Load() || !in.overlap()) {
			// Let the pipeline drain: after a failure, the group in
			// flight is failing with it; or the Applier asks for it.
			<-last.done
			chained = false
		}
		var prev *prepared
		if chained {
			prev = last
		}
		p := in.prepare(group, prev)
		if p == nil {
			return
		}
		handoff <- p
		last = p
		if !chained && !in.overlap() {
			// Without an Applier that takes a group while another commits,
			// each group is built on the committed state.
			<-p.done
		}
	}
	var group []decoded
	for {
		var d decoded
		var ok bool
		select {
		case d, ok = <-in.decode:
			if !ok {
				in.flushDirty(send)
				return
			}
			in.queued.Release(d.weight)
		case <-tick.C:
			in.flushDirty(send)
			continue
		}
		group = append(group[:0:0], d)
		n := len(d.events)
	drain:
		for n < in.opts.MaxGroup {
			select {
			case d, ok := <-in.decode:
				if !ok {
					break drain
				}
				in.queued.Release(d.weight)
				group = append(group, d)
				n += len(d.events)
			default:
				break drain
			}
		}
		// While a group commits, the next one grows to its size (or
		// until it ends): taken at once, groups shrank to what arrived
		// during one merge, and each commit's fixed cost (statements,
		// fsync) was paid for fewer events.
		if last != nil {
		grow:
			for n < min(last.events, in.opts.MaxGroup) {
				select {
				case d, ok := <-in.decode:
					if !ok {
						break grow
					}
					in.queued.Release(d.weight)
					group = append(group, d)
					n += len(d.events)
				case <-last.done:
					break grow
				}
			}
		}
		send(group)
	}
}

// overlap says whether the Applier takes a group while another commits.
func (in *Ingest) overlap() bool {
	if in.opts.Applier == nil {
		return true
	}
	p, ok := in.opts.Applier.(Pipeliner)
	return ok && p.Overlap()
}

func (in *Ingest) flushDirty(send func([]decoded)) {
	in.mu.Lock()
	n := len(in.dirty)
	in.mu.Unlock()
	if n > 0 {
		send(nil)
	}
}

// prepare builds group's batch: new events, quarantined ones, device
// records, and the merged state's writes; prev is the group in flight it
// is built on (nil: built on what is committed). nil when the merge
// failed (then nothing of it is kept).
func (in *Ingest) prepare(group []decoded, prev *prepared) *prepared {
	// Batches of a site given up since they were decoded are dropped
	// unacked: the site's next owner takes them in when the edge resends.
	kept := group[:0]
	for _, g := range group {
		if in.Owns(g.site) {
			kept = append(kept, g)
		} else {
			in.count(func(s *Stats) { s.NotOwned++ })
		}
	}
	group = kept
	p := &prepared{group: group, chained: prev != nil, done: make(chan struct{})}
	for _, g := range group {
		p.events += len(g.events)
	}
	p.b = in.opts.Store.NewBatch()
	b := p.b
	// Work on copies of the device records: they replace the live ones only
	// if the commit succeeds. A record a group in flight changed is taken
	// as that group leaves it.
	in.mu.Lock()
	// rec copies a record as the next commit writes it: presence (status,
	// hello) from the live record, the received ranges from the group in
	// flight when there is one, with the holes a hello recorded on the
	// live record meanwhile covered again.
	rec := func(id string) *store.DeviceRecord {
		live := in.devices[id]
		if live == nil {
			return nil
		}
		c := copyRecord(live)
		if pr, ok := in.pending[id]; ok {
			c.Acked, c.Above, c.Received, c.Rejected = pr.rec.Acked, slices.Clone(pr.rec.Above), pr.rec.Received, pr.rec.Rejected
			for _, g := range live.Gaps {
				c.Cover(g.From, g.To)
			}
		}
		return c
	}
	work := map[string]*store.DeviceRecord{}
	for id := range in.dirty {
		if d := rec(id); d != nil && in.Owns(d.Site) {
			work[id] = d
		}
	}
	clear(in.dirty)
	for _, g := range group {
		if _, ok := work[g.device]; ok {
			continue
		}
		if in.device(g.site, g.device) == nil {
			continue
		}
		if d := rec(g.device); d != nil {
			work[g.device] = d
		}
	}
	in.mu.Unlock()
	p.work = work

	// Each site's new events are sized up front: grown by append, the
	// copies of a 6,000-event group were an eighth of the committer's CPU.
	perSite := map[string]int{}
	for _, g := range group {
		perSite[g.site] += len(g.events)
	}
	newBySite := make(map[string][]event.Event, len(perSite))
	for site, n := range perSite {
		newBySite[site] = make([]event.Event, 0, n)
	}
	for _, g := range group {
		d := work[g.device]
		if d == nil {
			in.count(func(s *Stats) { s.Rejected++ })
			continue
		}
		for i := range g.events {
			ev := &g.events[i]
			if d.Holds(ev.Seq) {
				p.dups++
				continue
			}
			if reason := g.invalidReason(i); reason != "" {
				b.Quarantine(g.site, ev, g.encoded[i], reason)
				d.Rejected++
				p.quar++
			} else {
				b.PutEvent(g.site, ev, g.encoded[i])
				newBySite[g.site] = append(newBySite[g.site], *ev)
				d.Received++
				p.fresh++
			}
			if g.batch.Priority {
				d.Cover(ev.Seq, ev.Seq)
			}
		}
		if !g.batch.Priority {
			d.Cover(g.batch.From, g.batch.To)
		}
	}
	for site, evs := range newBySite {
		if len(evs) == 0 {
			delete(newBySite, site) // all duplicates or quarantined
		}
	}
	// The new events are all put: a store that can stores them now,
	// while the merge runs.
	if ea, ok := b.(store.EventsAhead); ok {
		ea.StoreEvents()
	}
	p.newBySite = newBySite
	p.applied = in.opts.Applier != nil && len(newBySite) > 0
	if p.applied {
		if err := in.opts.Applier.Apply(b, newBySite); err != nil {
			in.log.Error("merge failed; batch not committed", "err", err)
			if prev != nil {
				// Committed and Aborted go in Apply's order: the group in
				// flight ends first, so that the Applier's rebuild reads
				// its commit.
				<-prev.done
			}
			in.opts.Applier.Aborted()
			b.Discard()
			in.requeueDirty(work)
			return nil
		}
	}
	for _, d := range work {
		b.PutDevice(d)
	}
	in.mu.Lock()
	for id, d := range work {
		in.pending[id] = pendingRecord{rec: d, by: p}
	}
	in.mu.Unlock()
	return p
}

// ackOf is an ack the writer hands to the ack loop.
type ackOf struct {
	site, device string
	base, acked  uint64
}

// ackQueue is how many acks may wait for the ack loop: more than the
// devices of a few commits, so the writer rarely waits for it.
const ackQueue = 4096

// ackLoop signs and publishes the acks of committed groups, in the order
// the writer hands them over, while the writer goes on to the next
// commit: signing an ack per device (ed25519) took a tenth of the hub's
// CPU in a fan-in from 1,000 edges, all of it between one commit and the
// next.
func (in *Ingest) ackLoop(acks <-chan ackOf) {
	for a := range acks {
		in.ack(a.site, a.device, a.base, a.acked, false)
	}
}

// writeLoop commits the prepared groups in order and hands their acks
// to the ack loop.
func (in *Ingest) writeLoop(handoff <-chan *prepared, acks chan<- ackOf) {
	prevFailed := false
	for p := range handoff {
		failed := in.write(p, prevFailed, acks)
		prevFailed = failed
		in.lastFailed.Store(failed)
		close(p.done)
	}
}

// write commits p, or fails it without committing when it is chained to
// a group that failed; it reports whether p failed.
func (in *Ingest) write(p *prepared, prevFailed bool, acks chan<- ackOf) (failed bool) {
	var err error
	var took time.Duration
	if p.chained && prevFailed {
		p.b.Discard()
		in.log.Warn("group built on a failed commit dropped; nothing acked", "batches", len(p.group))
		failed = true
	} else {
		start := time.Now()
		err = p.b.Commit()
		took = time.Since(start)
		if err != nil {
			// Nothing is acked; the edges resend after their ack timeout.
			in.log.Error("commit failed; nothing acked", "err", err)
			failed = true
		}
	}
	if failed {
		in.mu.Lock()
		in.forget(p)
		in.mu.Unlock()
		if p.applied {
			in.opts.Applier.Aborted()
		}
		in.requeueDirty(p.work)
		return true
	}
	if p.applied {
		in.opts.Applier.Committed()
	}
	in.mu.Lock()
	// The live records take p's ranges in the same critical section as
	// p's pending records go: a group prepared meanwhile reads one or
	// the other, never the live records from before p.
	in.forget(p)
	for id, d := range p.work {
		live := in.devices[id]
		if live == nil {
			continue // its site was given up and taken on again: read anew
		}
		// Status and hello may have changed presence fields meanwhile; keep
		// those, take the received ranges from the commit.
		live.Acked, live.Above, live.Received, live.Rejected = d.Acked, d.Above, d.Received, d.Rejected
		if live.Lost != d.Lost {
			// A hello recorded a hole while this commit ran: keep it.
			for _, g := range live.Gaps {
				live.Cover(g.From, g.To)
			}
			in.dirty[id] = true
		}
	}
	in.stats.Batches += uint64(len(p.group))
	in.stats.Events += p.fresh
	in.stats.Duplicates += p.dups
	in.stats.Quarantined += p.quar
	in.stats.Commits++
	in.stats.CommitNanos += uint64(took)
	hooks := in.onEvent
	in.mu.Unlock()

	type span struct {
		device string
		base   uint64
	}
	acked := map[span]bool{}
	for _, g := range p.group {
		if d := p.work[g.device]; d != nil && !acked[span{g.device, g.base}] {
			acked[span{g.device, g.base}] = true
			acks <- ackOf{g.site, g.device, g.base, ackedFrom(d, g.base)}
		}
	}
	for site, evs := range p.newBySite {
		for _, f := range hooks {
			f(site, evs)
		}
	}
	return false
}

// forget drops the pending records p left; those a later group left stay.
// Called with mu held.
func (in *Ingest) forget(p *prepared) {
	for id, pr := range in.pending {
		if pr.by == p {
			delete(in.pending, id)
		}
	}
}
