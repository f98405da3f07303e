package replica

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/wire"
)

// Applying one Down message goes in steps, each its own function:
//
//	admit            is the message for this edge now (site, seen, gap, withheld)?
//	clearForSnapshot a snapshot drops everything held first
//	prepare          per change: take it or not; a delta is checked against
//	                 the version held (prepareDelta), a whole change encoded
//	                 and, when large, written ahead in chunks or pieces
//	                 (prepareWhole)
//	commit           one transaction: applyOne per change (a delta to a
//	                 split entity, a deletion, a whole change), the hooks,
//	                 the split gen and the cursor
//	recoverApply     a delta that did not fit the chunks held: apply what
//	                 comes before and catch up; a transaction too big: halves
//	done             cursor, ack, after-apply callbacks

// apply applies d; from an unverified message it never takes an access
// list, which opens doors, nor a trust change.
func (r *Replica) apply(d wire.Down, verified bool) error {
	if d.Site != r.site {
		return fmt.Errorf("%w: %s", ErrOtherSite, d.Site)
	}
	r.mu.Lock()
	cur, hooks, after := r.cursor, r.hooks, r.after
	r.mu.Unlock()
	if !r.admit(&d, cur) {
		return nil
	}
	if d.Snapshot {
		if err := r.clearForSnapshot(); err != nil {
			return err
		}
	}
	p, err := r.prepare(&d, cur, verified)
	if err != nil || p == nil {
		return err
	}
	applied, noFit, err := r.commit(d, p, hooks)
	if err != nil {
		return r.recoverApply(d, verified, cur, p.pieces, noFit, err)
	}
	r.done(d, p, applied, after)
	return nil
}

// admit reports whether d is to be applied on top of cursor cur. A
// message seen already is not; a message after a gap asks for a
// catch-up instead. A change for this edge that the site's topic carried
// without its body (withheld) ends what the message gives: d is cut
// before it.
func (r *Replica) admit(d *wire.Down, cur uint64) bool {
	if !d.Snapshot && d.Last <= cur {
		return false // seen already
	}
	if !d.Snapshot && d.Prev > cur {
		// Ask again only after askAgain: until the catch-up arrives, every
		// live message shows the same gap, and a message this edge cannot
		// take made each part of each catch-up ask for the next one (~35
		// asks a second, each a resend of everything after the cursor).
		r.askCatchUp(cur)
		return false
	}
	// Apply what comes before a withheld change and wait for the whole
	// message on this edge's own topic (a lost one is caught up when an
	// ack shows the cursor behind the head).
	for i, c := range d.Changes {
		if c.Withheld && c.Seq > cur && r.mine(c) {
			if c.Seq-1 <= cur {
				return false
			}
			d.Changes, d.Last = d.Changes[:i], c.Seq-1
			break
		}
	}
	return true
}

// clearForSnapshot drops every entity, piece and chunk held: a snapshot
// replaces everything. It takes as many transactions as that needs: a
// site's thousands of reports are more deletes than one transaction
// holds. A crash in between leaves the old cursor, ahead of the restored
// hub's head, so the hub sends the snapshot again (which already spans
// several messages, each applied on its own).
func (r *Replica) clearForSnapshot() error {
	for _, prefix := range []string{prefixEntity, prefixPart, prefixChunk} {
		if _, err := kv.DeleteAll(r.db, []byte(prefix)); err != nil {
			return fmt.Errorf("apply snapshot: clear the replica: %w", err)
		}
	}
	return nil
}

// plan is what prepare decided for a message's changes, index for index
// with its Changes.
type plan struct {
	take  []bool   // this edge takes the change
	inTxn []bool   // a delta to an entity kept split: applied in the transaction
	vals  [][]byte // the entity key's new value (a whole change's)
	// taken: entity/id → the newest change of it taken so far.
	taken map[string]int
	// pieces: the keys written ahead of the transaction, dropped again if
	// it fails.
	pieces [][]byte
	gen    uint64 // the last split gen given out, including this message's
	missed bool   // a delta for another version cut the message: catch up after
}

// prepare decides which of d's changes this edge takes and encodes them,
// writing large ones in pieces (or a split's chunks) before the
// transaction that applies the message (see partSize). A delta to an
// entity kept split is left to the transaction, which edits the chunks it
// touches. A delta for another version cuts d before it; a nil plan (and
// nil error) means nothing is left to apply.
func (r *Replica) prepare(d *wire.Down, cur uint64, verified bool) (*plan, error) {
	n := len(d.Changes)
	p := &plan{take: make([]bool, n), inTxn: make([]bool, n), vals: make([][]byte, n),
		taken: map[string]int{}, gen: r.gen}
	ahead := &aheadWriter{db: r.db}
	defer ahead.cancel()
	for i, c := range d.Changes {
		if !r.wants(*d, c, cur, verified) {
			continue
		}
		if c.Delta != nil {
			full, ok, err := r.prepareDelta(d, p, i, c)
			if err != nil {
				return nil, err
			}
			if !ok {
				// This edge holds another version (it missed one, or was
				// wiped): apply what comes before and catch up, which
				// sends the entity whole.
				r.deltaMisses.Inc()
				r.log.Info("delta for another version; catching up", "entity", c.Entity, "id", c.ID, "base", c.Base)
				if c.Seq-1 <= cur {
					r.askCatchUp(cur)
					return nil, nil
				}
				d.Changes, d.Last, p.take, p.vals = d.Changes[:i], c.Seq-1, p.take[:i], p.vals[:i]
				p.missed = true
				break
			}
			c = full
		}
		p.take[i] = true
		p.taken[c.Entity+"/"+c.ID] = i
		if c.Deleted || p.inTxn[i] {
			continue
		}
		val, err := r.prepareWhole(*d, p, ahead, c)
		if err != nil {
			return nil, err
		}
		p.vals[i] = val
	}
	if err := ahead.flush(); err != nil {
		return nil, fmt.Errorf("apply downlink (%d, %d]: store large changes: %w", d.Prev, d.Last, err)
	}
	p.pieces = ahead.keys
	return p, nil
}

// wants reports whether this edge takes change c of d: one after the
// cursor (any, in a snapshot), for this edge, with its body. An
// unverified message gives no access list and no trust change.
func (r *Replica) wants(d wire.Down, c wire.Change, cur uint64, verified bool) bool {
	if (!d.Snapshot && c.Seq <= cur) || !r.mine(c) || c.Withheld {
		return false
	}
	if !verified && (c.Entity == wire.EntityAccessList || c.Entity == wire.EntityTrust) {
		// An access list opens doors, a trust change adds a CA: only
		// the hub's signature gives either.
		r.log.Warn("change in an unverified message ignored (enroll this edge)", "entity", c.Entity, "id", c.ID)
		return false
	}
	return true
}

// prepareDelta checks delta change i of d against the version held
// (patch). ok is false for another version. A delta to an entity kept
// split is marked for the transaction and returned as it is; any other
// comes back whole, and replaces the delta in d (a retry of the message,
// in halves or cut short, takes it as a whole change).
func (r *Replica) prepareDelta(d *wire.Down, p *plan, i int, c wire.Change) (wire.Change, bool, error) {
	full, split, ok, err := r.patch(d.Changes, p.inTxn, p.taken, c)
	if err != nil {
		return c, false, fmt.Errorf("apply downlink (%d, %d]: %s %s: %w", d.Prev, d.Last, c.Entity, c.ID, err)
	}
	if !ok {
		return c, false, nil
	}
	if split {
		p.inTxn[i] = true
		return c, true, nil
	}
	d.Changes[i] = full
	return full, true, nil
}

// prepareWhole encodes whole change c as the entity key's value. One
// larger than splitAbove keeps its long lists apart in chunks under a new
// gen (split.go) when that makes its own part fit a piece; one still
// larger than partSize is kept in pieces, the entity key holding a
// pointer to them. Chunks and pieces go to ahead.
func (r *Replica) prepareWhole(d wire.Down, p *plan, ahead *aheadWriter, c wire.Change) ([]byte, error) {
	val, err := event.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("apply downlink (%d, %d]: encode %s %s: %w", d.Prev, d.Last, c.Entity, c.ID, err)
	}
	if len(val) > splitAbove {
		s, chunks, ok, err := splitBody(c, p.gen+1)
		if err != nil {
			return nil, fmt.Errorf("apply downlink (%d, %d]: split %s %s: %w", d.Prev, d.Last, c.Entity, c.ID, err)
		}
		var hv []byte
		if ok {
			if hv, err = s.encode(); err != nil {
				return nil, err
			}
		}
		// A split whose own part is larger than a piece (fields other
		// than arrays that big) is not worth it: the change is kept
		// whole, in pieces.
		if ok && len(hv) <= partSize {
			p.gen++
			ahead.open()
			for id, b := range chunks {
				if err := ahead.set(chunkKey(s.Gen, id), b); err != nil {
					return nil, fmt.Errorf("apply downlink (%d, %d]: store %s %s: %w", d.Prev, d.Last, c.Entity, c.ID, err)
				}
			}
			val = hv
		}
	}
	if len(val) > partSize {
		ahead.open()
		var ptr pointer
		ptr.Seq = c.Seq
		for off := 0; off < len(val); off += partSize {
			if err := ahead.set(partKey(c.Seq, ptr.Parts), val[off:min(off+partSize, len(val))]); err != nil {
				return nil, fmt.Errorf("apply downlink (%d, %d]: store %s %s: %w", d.Prev, d.Last, c.Entity, c.ID, err)
			}
			ptr.Parts++
		}
		if val, err = event.Marshal(ptr); err != nil {
			return nil, err
		}
	}
	return val, nil
}

// aheadWriter writes the chunks and pieces of a message's large changes
// in a write batch before its transaction, remembering their keys.
type aheadWriter struct {
	db   *badger.DB
	wb   *badger.WriteBatch
	keys [][]byte
}

func (w *aheadWriter) open() {
	if w.wb == nil {
		w.wb = w.db.NewWriteBatch()
	}
}

func (w *aheadWriter) set(k, v []byte) error {
	if err := w.wb.Set(k, v); err != nil {
		return err
	}
	w.keys = append(w.keys, k)
	return nil
}

func (w *aheadWriter) flush() error {
	if w.wb == nil {
		return nil
	}
	return w.wb.Flush()
}

func (w *aheadWriter) cancel() {
	if w.wb != nil {
		w.wb.Cancel()
	}
}

// commit applies the changes p takes, the split gen and d's cursor in one
// transaction, running the hooks on each change inside it. noFit is the
// index of a delta that did not fit the chunks held (-1 for none).
func (r *Replica) commit(d wire.Down, p *plan, hooks []func(*badger.Txn, wire.Change) error) (applied []wire.Change, noFit int, err error) {
	noFit = -1
	err = r.db.Update(func(txn *badger.Txn) error {
		for i, c := range d.Changes {
			if !p.take[i] {
				continue
			}
			if err := p.applyOne(txn, i, c); err != nil {
				if p.inTxn[i] && errors.Is(err, errNoFit) {
					noFit = i
				}
				return err
			}
			for _, h := range hooks {
				if err := h(txn, c); err != nil {
					return fmt.Errorf("apply %s %s: %w", c.Entity, c.ID, err)
				}
			}
			applied = append(applied, c)
		}
		if p.gen != r.gen {
			if err := txn.Set([]byte(keyGen), kv.U64(p.gen)); err != nil {
				return err
			}
		}
		return txn.Set([]byte(keyCursor), kv.U64(d.Last))
	})
	return applied, noFit, err
}

// applyOne writes change i, by kind, in txn.
func (p *plan) applyOne(txn *badger.Txn, i int, c wire.Change) error {
	key := entityKey(c.Entity, c.ID)
	old, found, err := loadStored(txn, key)
	if err != nil {
		return err
	}
	switch {
	case p.inTxn[i]:
		return applySplitDelta(txn, key, old, found, c)
	case c.Deleted:
		return applyDeleted(txn, key, old, found)
	default:
		return applyWhole(txn, key, old, found, p.vals[i])
	}
}

// applySplitDelta edits the chunks of the entity kept split (old) that
// delta c touches and writes its new head. errNoFit: the entity is not
// held split, or the delta does not fit it.
func applySplitDelta(txn *badger.Txn, key []byte, old stored, found bool, c wire.Change) error {
	if !found || old.split == nil {
		return errNoFit
	}
	if err := old.split.patch(txn, c); err != nil {
		return err
	}
	head, err := old.split.encode()
	if err != nil {
		return err
	}
	if c.Deleted { // a delta that also says deleted (the hub sends none) deletes the key
		return txn.Delete(key)
	}
	return txn.Set(key, head)
}

// applyDeleted deletes the entity with what its stored form keeps under
// other keys.
func applyDeleted(txn *badger.Txn, key []byte, old stored, found bool) error {
	if found {
		if err := old.drop(txn); err != nil {
			return err
		}
	}
	return txn.Delete(key)
}

// applyWhole replaces the entity with val (prepared: the change, a split
// head or a pointer to pieces), dropping what the old form kept under
// other keys.
func applyWhole(txn *badger.Txn, key []byte, old stored, found bool, val []byte) error {
	if found {
		if err := old.drop(txn); err != nil {
			return err
		}
	}
	return txn.Set(key, val)
}

// recoverApply handles a transaction that failed (err) after prepare
// wrote the chunks and pieces at keys pieces, which it drops. A delta
// that did not fit the chunks held (noFit) is one for another version:
// apply what comes before it and catch up. A message more than one
// transaction holds is applied in halves.
func (r *Replica) recoverApply(d wire.Down, verified bool, cur uint64, pieces [][]byte, noFit int, err error) error {
	if derr := kv.DeleteKeys(r.db, pieces); derr != nil {
		r.log.Warn("drop pieces of a change not applied", "err", derr) // Open drops them too
	}
	if errors.Is(err, errNoFit) && noFit >= 0 {
		c := d.Changes[noFit]
		r.deltaMisses.Inc()
		r.log.Warn("delta does not fit the version held; catching up", "entity", c.Entity, "id", c.ID, "err", err)
		if c.Seq-1 <= cur {
			r.askCatchUp(cur)
			return nil
		}
		d.Changes, d.Last = d.Changes[:noFit], c.Seq-1
		if err := r.apply(d, verified); err != nil {
			return err
		}
		r.askCatchUp(d.Last)
		return nil
	}
	if errors.Is(err, badger.ErrTxnTooBig) && len(d.Changes) > 1 {
		// More than one transaction holds (with the hooks' writes): apply
		// it in two halves, each moving the cursor to its end.
		first, rest := halves(d)
		if err := r.apply(first, verified); err != nil {
			return err
		}
		return r.apply(rest, verified)
	}
	return fmt.Errorf("apply downlink (%d, %d]: %w", d.Prev, d.Last, err)
}

// halves splits a message in two that follow each other: the first ends
// at the seq of its last change, where the second continues.
func halves(d wire.Down) (first, rest wire.Down) {
	mid := len(d.Changes) / 2
	first = wire.Down{Site: d.Site, Prev: d.Prev, Last: d.Changes[mid-1].Seq, Clock: d.Clock, Snapshot: d.Snapshot, Changes: d.Changes[:mid]}
	rest = wire.Down{Site: d.Site, Prev: first.Last, Last: d.Last, Clock: d.Clock, Changes: d.Changes[mid:]}
	return first, rest
}

// done records a committed message: the split gen, the cursor and the
// count of changes applied, reports the cursor to the hub (asking for a
// catch-up when a delta for another version cut the message), and hands
// the applied changes to the after-apply callbacks.
func (r *Replica) done(d wire.Down, p *plan, applied []wire.Change, after []func([]wire.Change)) {
	r.gen = p.gen
	r.mu.Lock()
	r.cursor = d.Last
	r.applied += uint64(len(applied))
	r.mu.Unlock()
	r.ack(wire.DownAck{Cursor: d.Last})
	if p.missed {
		r.askCatchUp(d.Last)
	}
	if len(applied) > 0 {
		for _, f := range after {
			f(applied)
		}
	}
}
