// Package merge folds edge events and hub decisions into one community state, order-free.
//
// # Facts and state
//
// The hub's merged state is a pure function of a set of facts: edge events
// (tagged with the site of the device that sent them) and the hub's own
// decision events (kinds >= event.FirstHubKind). State.Apply folds one fact
// in and is commutative, associative and idempotent: any permutation,
// duplication or regrouping of the same facts gives byte-identical
// State.Encode output. To get there every entity keeps the facts it depends
// on in canonical form (sorted slices, maps with sortable keys, or the
// winner of a register) and recomputes its derived fields from them alone;
// nothing depends on arrival order. A fact is identified by (device, seq):
// the hub's ingest deduplicates and never passes two different facts under
// one id.
//
// Facts are ordered, where order matters, by their key (HLC, device, seq):
// HLC first, ties by device id, then by sequence number.
//
// # Merge rules
//
//   - Reports are created by a report event (id = the event's id). Status
//     moves submitted → accepted → in_progress → resolved, or to rejected,
//     only by ReportPatch decisions folded in key order; a patch that is not
//     a legal transition from the status reached so far leaves the status
//     alone (its note and assignee still count). Note and assignee are
//     last-writer-wins registers by key; an empty field in a patch leaves
//     the register as it is. Patches and votes that arrive before their
//     report are kept and count once it arrives.
//   - Votes ("me too") are a grow-only set of residents per report. The
//     reporter's own vote is not counted: filing the report already says
//     "me too", so Votes counts the other residents who agree.
//   - Ratings: per (target, resident) the rating with the greatest key
//     counts; a target keeps their count, sum and mean.
//   - Alarms, keyed by site, source (sensor or door) and kind, fold their
//     raises (alarm events with active=true, access events with result
//     "forced"), clears (active=false, AlarmClear) and acknowledgements in
//     key order: a raise opens an episode (first raised), a clear later in
//     key order closes it, an AlarmAck marks the open episode acknowledged.
//   - Notices are last-writer-wins by key per notice id; expiry is data and
//     queries take now as a parameter.
//   - Access lists are last-writer-wins by key per (site, building), as a
//     whole: an operator sends a building's whole list each time. Cards are
//     keyed hashes (shared/accesslist); the merge never sees one in clear.
//   - Attendance: check-ins are a grow-only set. An activity's check-in
//     window runs from CheckinOpens minutes before its start to its end. A
//     check-in is what its kiosk judged it (Act), or else what its HLC time
//     says against the window of the winning ActivitySet: a sign-up before
//     the window (takes a seat, is not attendance), attendance inside it,
//     and nothing after the end. Per (activity, resident), in key order,
//     each check-out pairs with the latest attendance check-in since the
//     previous check-out (a repeated tap restarts the clock); a check-out
//     with no open check-in and a check-in never closed add nothing. Hours
//     are the sum of those pairs' wall-clock spans, clamped to the window,
//     in milliseconds. An activity's ratings count only from residents who
//     attended; the others are kept and counted as ignored.
//
// # Seats: escrow
//
// An activity with capacity C is a bounded counter split into escrow. The
// hub grants each kiosk of the site a share (Grant, cumulative per kiosk)
// and keeps the rest as its reserve. A kiosk (see Ledger) confirms at once,
// offline too, while its share lasts and waitlists the rest; its answer is
// the check-in's Status. Status "confirmed" always means a seat of that
// kiosk's share (or a repeat of a resident it confirmed before): a
// resident the kiosk's replica shows confirmed by the hub is told
// "confirmed" but recorded with no status, since the kiosk used no seat. A
// confirmation, by a kiosk or by the hub's Promote, is a fact and is never
// revoked.
//
// The hub counts, per activity:
//
//	seated   = residents confirmed and not checked out
//	used_k   = distinct residents with a "confirmed" check-in from kiosk k
//	held_k   = granted_k - returned_k (returned: from the kiosk's releases)
//	unused_k = max(0, held_k - used_k)
//	reserve  = C - seated - Σ unused_k
//
// The hub only hands out seats from a positive reserve. Everything the hub
// does not know yet errs on the safe side: a kiosk's undelivered
// confirmations still count as unused seats of that kiosk (a release's own
// Used is shown but never counted, or those seats would be freed while
// their residents are on their way), and an undelivered release still
// counts as held, so the reserve never promises a seat a kiosk may still
// give away and seated never exceeds C. The formula also frees seats where
// the ledgers over-count: a resident confirmed at two kiosks holds one seat
// (both kiosks' used_k count them, seated counts them once), and a
// resident who checks out gives their seat up for good (they stay
// confirmed, and a later check-in of theirs takes no seat).
//
// Decide is the hub's policy, a pure function of the state. Per activity of
// the site, not yet ended:
//
//  1. Promote waitlisted and recorded residents who have not checked out,
//     in key order of their first check-in, while the reserve is positive.
//  2. If residents are still waiting (or capacity was lowered below what is
//     out), Recall every kiosk still holding unused seats; each answers
//     with a release (see Ledger.Sync) that moves them to the reserve, and
//     the next Decide promotes from there.
//  3. Otherwise Grant each listed kiosk that has no grant yet
//     floor(C*KioskShare/100)/n seats (n kiosks listed), bounded by the
//     reserve. Kiosks are never granted again after their first grant.
//
// An activity with capacity 0 has no limit: kiosks confirm everyone and the
// hub promotes every recorded check-in. The hub records each decision as an
// event and applies it before it calls Decide again; replaying facts never
// decides anything.
package merge
