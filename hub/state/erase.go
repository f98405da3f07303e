package state

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/merge"
	"linli/shared/wire"
)

// Erased residents: x/erased/{site}/{resident} → the token that replaces
// them. Kept so that events still on their way from an edge are
// anonymised as they arrive.
const prefixErased = "x/erased/"

// Erasure reports what an erasure did.
type Erasure struct {
	Site     string `json:"site"`
	Resident string `json:"resident"`
	Token    string `json:"replaced_by"`
	Facts    int    `json:"facts"`
}

// Erase anonymises a resident of a site on the hub — in the merged state,
// its stored facts and raw events — and sends the erasure down so edges do
// the same with what they hold.
func (s *State) Erase(site, resident string) (Erasure, error) {
	if err := event.ValidID(site); err != nil {
		return Erasure{}, &event.FieldError{Field: "site", Msg: err.Error()}
	}
	if err := event.ValidID(resident); err != nil {
		return Erasure{}, &event.FieldError{Field: "resident", Msg: err.Error()}
	}
	if !s.owns(site) {
		return Erasure{}, &NotOwnedError{Site: site}
	}
	s.lockWrite()
	defer s.writeMu.Unlock()
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return Erasure{}, err
	}
	sum := sha256.Sum256(append(salt, []byte(site+"/"+resident)...))
	e := Erasure{Site: site, Resident: resident, Token: event.ErasedPrefix + hex.EncodeToString(sum[:6])}

	b := s.opts.Store.NewBatch()
	n, err := s.rewriteFacts(b, site, resident, e.Token)
	if err != nil {
		b.Discard()
		return Erasure{}, err
	}
	e.Facts = n
	b.Set(kv.Key(prefixErased, []byte(site+"/"+resident)), []byte(e.Token))
	// The snapshot still names the resident, and the rewritten facts
	// would fold on top of it: the next load rebuilds from every fact.
	b.Delete([]byte(keySnapHead))
	if err := b.Commit(); err != nil {
		return Erasure{}, fmt.Errorf("store erasure: %w", err)
	}
	s.mu.Lock()
	if s.erased == nil {
		s.erased = map[string]string{}
	}
	s.erased[site+"/"+resident] = e.Token
	s.mu.Unlock()
	if err := s.load(); err != nil {
		return Erasure{}, err
	}
	// Send every report and activity of the site down again (views may
	// have named the resident), and the erasure itself.
	b = s.opts.Store.NewBatch()
	var changes []wire.Change
	s.mu.RLock()
	for _, r := range s.merged.Reports(site) {
		changes = append(changes, s.changesFor(merge.Ref{Kind: merge.RefReport, Site: site, ID: r.ID})...)
	}
	for _, a := range s.merged.Activities(site) {
		changes = append(changes, s.changesFor(merge.Ref{Kind: merge.RefActivity, Site: site, ID: a.ID})...)
	}
	s.mu.RUnlock()
	body, err := event.Marshal(e.Token)
	if err != nil {
		b.Discard()
		return Erasure{}, err
	}
	changes = append(changes, wire.Change{Entity: wire.EntityResident, ID: resident, Body: body})
	if err := s.opts.Downlink.Append(b, site, changes); err != nil {
		b.Discard()
		s.opts.Downlink.Abort()
		return Erasure{}, err
	}
	if err := b.Commit(); err != nil {
		s.opts.Downlink.Abort()
		return Erasure{}, fmt.Errorf("store erasure downlink: %w", err)
	}
	s.opts.Downlink.Commit()
	s.log.Info("resident erased", "site", site, "facts", e.Facts)
	return e, nil
}

// rewriteFacts anonymises resident in every stored fact of site and in the
// raw events behind them.
func (s *State) rewriteFacts(b store.Batch, site, resident, token string) (int, error) {
	n := 0
	err := s.opts.Store.View(func(v store.View) error {
		return v.Scan(kv.Key(prefixFact, []byte(site+"/")), nil, 0, func(key, val []byte, _ uint64) (bool, error) {
			fs, embedded, err := readFacts(v, key, val)
			if err != nil {
				return false, err
			}
			for _, f := range fs {
				changed, err := s.anonymiseEvent(b, site, &f.Event, resident, token, embedded)
				if err != nil {
					return false, err
				}
				if changed {
					n++
				}
			}
			return true, nil
		})
	})
	return n, err
}

// anonymiseEvent rewrites an event in b if it names resident: its stored
// copy (an edge event's), and with embedded set the fact that holds it.
func (s *State) anonymiseEvent(b store.Batch, site string, ev *event.Event, resident, token string, embedded bool) (bool, error) {
	body, err := ev.Decode()
	if err != nil {
		return false, nil // not ours to judge here: quarantined elsewhere
	}
	nb, changed := event.Anonymise(body, resident, token)
	if !changed {
		return false, nil
	}
	raw, err := event.Marshal(nb)
	if err != nil {
		return false, err
	}
	ev.SetBody(raw)
	if embedded {
		if err := s.putFact(b, site, ev); err != nil {
			return false, err
		}
	}
	if !ev.Kind.IsHub() {
		stored := *ev
		stored.Device = ""
		enc, err := stored.Encode()
		if err != nil {
			return false, err
		}
		b.RewriteEvent(site, ev, enc)
	}
	return true, nil
}

// loadErased reads the erased residents.
func loadErased(v store.View) (map[string]string, error) {
	out := map[string]string{}
	err := v.Scan([]byte(prefixErased), nil, 0, func(key, val []byte, _ uint64) (bool, error) {
		out[string(key[len(prefixErased):])] = string(val)
		return true, nil
	})
	return out, err
}

// scrubArrivals anonymises erased residents in events arriving after the
// erasure (recorded on an edge before it heard of it).
func (s *State) scrubArrivals(b store.Batch, site string, ev *event.Event) error {
	s.mu.RLock()
	erased := s.erased
	s.mu.RUnlock()
	if len(erased) == 0 {
		return nil
	}
	body, err := ev.Decode()
	if err != nil {
		return nil
	}
	for _, who := range event.Residents(body) {
		if token, ok := erased[site+"/"+who]; ok {
			if _, err := s.anonymiseEvent(b, site, ev, who, token, false); err != nil { // its fact will be a reference
				return err
			}
		}
	}
	return nil
}
