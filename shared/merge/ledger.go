package merge

import (
	"slices"

	"linli/shared/event"
)

// Ledger is a kiosk's own account of its share of one activity's seats:
// the kiosk side of the escrow, pure like the rest of this package.
//
// The kiosk answers a check-in with Decide, records the check-in event
// durably with the status Decide gave, and only then folds it in with
// Record; after a
// restart it rebuilds the ledger by recording its own check-ins and
// releases again (Record is idempotent) and syncing the last view. When it
// receives a new ActivityView it calls Sync, and records the release Sync
// returns, if any, as an event of its own (then Record, as for check-ins).
//
// Its counters only grow and Record merges by max and set union, so
// recording an event twice, or again after a restart, changes nothing.
type Ledger struct {
	Activity string `cbor:"1,keyasint" json:"activity"`
	// Known is set by the first Sync: before it the kiosk does not know the
	// activity and answers "recorded".
	Known    bool   `cbor:"2,keyasint,omitempty" json:"known"`
	Capacity uint32 `cbor:"3,keyasint,omitempty" json:"capacity"` // as last synced; 0 = no limit
	Granted  uint32 `cbor:"4,keyasint,omitempty" json:"granted"`  // cumulative
	// Used counts the distinct residents this kiosk recorded as confirmed
	// (seats of its share), exactly as the hub counts them.
	Used     uint32 `cbor:"5,keyasint,omitempty" json:"used"`
	Returned uint32 `cbor:"6,keyasint,omitempty" json:"returned"` // cumulative, in releases recorded
	// Recalled is set while a recall covers the whole current grant: the
	// kiosk confirms nobody from its share then.
	Recalled bool `cbor:"7,keyasint,omitempty" json:"recalled"`
	// Released is the grant the latest recorded release answered.
	Released  uint32   `cbor:"8,keyasint,omitempty" json:"released"`
	Residents []string `cbor:"9,keyasint,omitempty" json:"residents"` // confirmed here, sorted
}

// NewLedger returns the empty ledger of a kiosk for an activity.
func NewLedger(activity string) *Ledger { return &Ledger{Activity: activity} }

// Available is the number of seats the kiosk may still confirm with.
func (l *Ledger) Available() uint32 {
	if l.Recalled {
		return 0
	}
	return uint32(max(0, int64(l.Granted)-int64(l.Returned)-int64(l.Used)))
}

func (l *Ledger) confirmedHere(resident string) bool {
	_, ok := slices.BinarySearch(l.Residents, resident)
	return ok
}

// Decide answers a check-in of resident without changing the ledger. It
// returns what to tell the resident and the status to record in the
// check-in event:
//
//   - before the kiosk knows the activity: recorded, recorded;
//   - a resident the hub has confirmed (hubConfirmed, from the kiosk's
//     replica) and not this kiosk: confirmed, "" — the kiosk decided
//     nothing and used no seat, and the hub already holds the confirmation;
//   - a resident this kiosk confirmed before, an activity with no limit, or
//     while the share lasts: confirmed, confirmed;
//   - otherwise: waitlisted, waitlisted.
//
// So an event's status "confirmed" always means a seat of this kiosk's
// share (or a repeat of one), which is what the hub counts in used_k; a
// confirmation is never taken back.
//
// When the share is used up but the hub may still have a seat (hubMaySeat:
// its view shows seats neither seated nor held here), the answer is
// recorded, recorded: the hub confirms from its reserve or after a recall,
// and telling the resident "full" would be untrue.
func (l *Ledger) Decide(resident string, hubConfirmed, hubMaySeat bool) (answer, status string) {
	switch {
	case !l.Known:
		return event.StatusRecorded, event.StatusRecorded
	case l.confirmedHere(resident), l.Capacity == 0:
		return event.StatusConfirmed, event.StatusConfirmed
	case hubConfirmed:
		return event.StatusConfirmed, ""
	case l.Available() > 0:
		return event.StatusConfirmed, event.StatusConfirmed
	case hubMaySeat:
		return event.StatusRecorded, event.StatusRecorded
	}
	return event.StatusWaitlisted, event.StatusWaitlisted
}

// HubMaySeat tells whether the hub may still have a seat beyond this
// kiosk's share, by the last view: seats not seated there, less those this
// kiosk confirmed that the view does not list yet and those still free
// here. Those seats are in the hub's reserve or unused at other kiosks,
// which a recall brings back.
func (l *Ledger) HubMaySeat(v *ActivityView) bool {
	if v.Capacity == 0 {
		return true
	}
	var unseen int64
	for _, r := range l.Residents {
		if _, ok := slices.BinarySearch(v.Confirmed, r); !ok {
			unseen++
		}
	}
	return int64(v.SeatsLeft)-unseen-int64(l.Available()) > 0
}

// Record folds in an event the kiosk recorded itself: a check-in of this
// activity it answered confirmed, or a release. Other bodies are ignored.
// Recording the same event twice changes nothing.
func (l *Ledger) Record(b event.Body) {
	switch b := b.(type) {
	case *event.Checkin:
		if b.Activity != l.Activity || b.Action != "in" || b.Status != event.StatusConfirmed {
			return
		}
		i, found := slices.BinarySearch(l.Residents, b.Resident)
		if !found {
			l.Residents = slices.Insert(l.Residents, i, b.Resident)
			l.Used++
		}
	case *event.Release:
		if b.Activity != l.Activity {
			return
		}
		l.Granted = max(l.Granted, b.Granted)
		l.Returned = max(l.Returned, b.Returned)
		l.Released = max(l.Released, b.Granted)
		l.Recalled = l.Recalled || l.Released >= l.Granted
	}
}

// Sync applies the hub's view of the activity to the ledger of kiosk and
// returns the release the kiosk must record when a recall is in force and
// not answered yet (nil otherwise). A view older than what the ledger has
// seen changes nothing it should not: grants only grow, and a recall
// covering less than the current grant is stale.
func (l *Ledger) Sync(v *ActivityView, kiosk string) *event.Release {
	l.Known, l.Capacity = true, v.Capacity
	sh := v.Share(kiosk)
	if sh.Granted > l.Granted {
		l.Granted, l.Recalled = sh.Granted, false
	}
	if sh.Recalled && sh.Granted >= l.Granted {
		l.Recalled = true
	}
	if !l.Recalled || l.Released >= l.Granted {
		return nil
	}
	unused := max(0, int64(l.Granted)-int64(l.Returned)-int64(l.Used))
	return &event.Release{Activity: l.Activity, Granted: l.Granted, Used: l.Used, Returned: l.Returned + uint32(unused)}
}
