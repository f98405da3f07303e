package replica

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/goleak"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/identity"
	"linli/shared/kv"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T) *Replica {
	t.Helper()
	db, err := kv.Open(t.TempDir(), kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	r, err := Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func change(seq uint64, entity, id, body string) wire.Change {
	b, _ := event.Marshal(body)
	return wire.Change{Seq: seq, Entity: entity, ID: id, Body: b}
}

func TestApplyFollowsTheCursor(t *testing.T) {
	r := open(t)
	steps := []struct {
		name    string
		down    wire.Down
		cursor  uint64
		catchUp bool
		notices int
	}{
		{"first", wire.Down{Site: "s1", Prev: 0, Last: 2, Changes: []wire.Change{change(1, "notice", "n1", "a"), change(2, "notice", "n2", "b")}}, 2, false, 2},
		{"old again", wire.Down{Site: "s1", Prev: 0, Last: 2, Changes: []wire.Change{change(1, "notice", "n1", "a")}}, 2, false, 2},
		{"a gap", wire.Down{Site: "s1", Prev: 5, Last: 6, Changes: []wire.Change{change(6, "notice", "n6", "x")}}, 2, true, 2},
		{"follows, compacted", wire.Down{Site: "s1", Prev: 2, Last: 9, Changes: []wire.Change{change(7, "notice", "n1", "a2"), {Seq: 9, Entity: "notice", ID: "n2", Deleted: true}}}, 9, false, 1},
		{"for another device", wire.Down{Site: "s1", Prev: 9, Last: 10, Changes: []wire.Change{{Seq: 10, Entity: "notice", ID: "mine-not", Device: "kiosk-2", Body: []byte{0x60}}}}, 10, false, 1},
		{"snapshot resets", wire.Down{Site: "s1", Prev: 0, Last: 3, Snapshot: true, Changes: []wire.Change{change(3, "notice", "n3", "c")}}, 3, false, 1},
	}
	for _, s := range steps {
		if err := r.Apply(s.down); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := r.Cursor(); got != s.cursor {
			t.Fatalf("%s: cursor %d, want %d", s.name, got, s.cursor)
		}
		var asked bool
		select {
		case a := <-r.Acks():
			asked = a.CatchUp
		default:
		}
		if asked != s.catchUp {
			t.Fatalf("%s: catch-up asked %v, want %v", s.name, asked, s.catchUp)
		}
		list, err := r.List("notice")
		if err != nil || len(list) != s.notices {
			t.Fatalf("%s: %d notices (%v), want %d", s.name, len(list), err, s.notices)
		}
	}
	if err := r.Apply(wire.Down{Site: "s2", Last: 20}); err == nil {
		t.Fatal("applied another site's message")
	}
}

// Only the hub's key opens the downlink; an access list never comes from
// an unverified message.
func TestVerifiedDownlink(t *testing.T) {
	r := open(t)
	hubKey, _ := identity.NewKey()
	forger, _ := identity.NewKey()
	r.SetVerifier(func(p []byte) ([]byte, bool, error) {
		out, err := identity.Open(p, hubKey.Public().(ed25519.PublicKey), "hub")
		return out, err == nil, err
	})
	hooked := 0
	r.OnApply(func(_ *badger.Txn, c wire.Change) error { hooked++; return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	msg := func(key []byte, seq uint64) []byte {
		d := wire.Down{Site: "s1", Prev: seq - 1, Last: seq, Changes: []wire.Change{change(seq, wire.EntityAccessList, "B3", "cards")}}
		p, err := wire.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		env, err := identity.Sign(key, "hub", p)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	r.Handle("t", msg(forger, 1))
	p, _ := wire.Encode(wire.Down{Site: "s1", Prev: 0, Last: 1, Changes: []wire.Change{change(1, wire.EntityAccessList, "B3", "unsigned")}})
	r.Handle("t", p)
	r.Handle("t", msg(hubKey, 1))
	poll.Eventually(t, 5*time.Second, func() (bool, string) {
		_, _, _, refused := r.Stats()
		return r.Cursor() == 1 && refused == 2, "forged or unsigned message not refused, or the real one not applied"
	})
	c, ok, err := r.Get(wire.EntityAccessList, "B3")
	var body string
	if err == nil && ok {
		err = event.Unmarshal(c.Body, &body)
	}
	if !ok || body != "cards" || hooked != 1 {
		t.Fatalf("access list %q (%v, %v), hooks %d; want the hub's only", body, ok, err, hooked)
	}
}

// An unverified message (an edge not enrolled yet) carries no access
// list, which opens doors, and no trust change, which would add a site CA.
func TestUnverifiedMessagesCarryNoAccessListOrTrust(t *testing.T) {
	for _, entity := range []string{wire.EntityAccessList, wire.EntityTrust} {
		t.Run(entity, func(t *testing.T) {
			r := open(t)
			d := wire.Down{Site: "s1", Prev: 0, Last: 2, Changes: []wire.Change{change(1, entity, "x", "body"), change(2, "notice", "n", "x")}}
			if err := r.apply(d, false); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := r.Get(entity, "x"); ok {
				t.Fatalf("an unverified message installed a %s change", entity)
			}
			if _, ok, _ := r.Get("notice", "n"); !ok {
				t.Fatal("the rest of the message was not applied")
			}
		})
	}
}

// A snapshot replaces every entity the replica holds, however many: more
// than one Badger transaction can delete (about 13,000 keys with the small
// profile) once failed the snapshot for good, leaving the edge unable to
// follow a restored hub.
func TestSnapshotReplacesManyEntities(t *testing.T) {
	r := open(t)
	const held = 20_000
	var seq uint64
	for seq < held {
		d := wire.Down{Site: "s1", Prev: seq}
		for range 500 {
			seq++
			d.Changes = append(d.Changes, change(seq, "report", "r"+strconv.FormatUint(seq, 10), "old"))
		}
		d.Last = seq
		if err := r.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := r.List("report"); err != nil || len(got) != held {
		t.Fatalf("before the snapshot: %d reports, %v", len(got), err)
	}
	snap := wire.Down{Site: "s1", Prev: 0, Last: 2, Snapshot: true,
		Changes: []wire.Change{change(1, "report", "r1", "restored"), change(2, "notice", "n1", "hello")}}
	if err := r.Apply(snap); err != nil {
		t.Fatalf("snapshot over %d entities: %v", held, err)
	}
	reports, err := r.List("report")
	if err != nil || len(reports) != 1 || reports[0].ID != "r1" {
		t.Fatalf("after the snapshot: %d reports (%v), want only r1", len(reports), err)
	}
	if c, ok, err := r.Get("notice", "n1"); err != nil || !ok || c.Seq != 2 {
		t.Fatalf("snapshot notice: %+v, %v, %v", c, ok, err)
	}
	if r.Cursor() != 2 {
		t.Fatalf("cursor %d after the snapshot, want 2", r.Cursor())
	}
}

// countParts counts the stored pieces of large changes.
func countParts(t *testing.T, db *badger.DB) int {
	t.Helper()
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixPart)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A change larger than a Badger transaction holds (a busy activity's view,
// a big access list) is kept in pieces and reads back whole; replacing or
// deleting it drops its pieces, and pieces of a message that was never
// applied are dropped when the replica opens.
func TestLargeChangesInPieces(t *testing.T) {
	db, err := kv.Open(t.TempDir(), kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3<<20) // more than one transaction of the small profile
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	large := change(1, "activity", "a1", string(big))
	if err := r.Apply(wire.Down{Site: "s1", Prev: 0, Last: 2, Changes: []wire.Change{large, change(2, "notice", "n1", "small")}}); err != nil {
		t.Fatalf("apply a %d-byte change: %v", len(big), err)
	}
	if n := countParts(t, db); n < 2 {
		t.Fatalf("%d pieces stored for a %d-byte change", n, len(big))
	}
	got, ok, err := r.Get("activity", "a1")
	if err != nil || !ok {
		t.Fatalf("get the large change: %v, %v", ok, err)
	}
	var body string
	if err := event.Unmarshal(got.Body, &body); err != nil || body != string(big) || got.Seq != 1 {
		t.Fatalf("large change read back: seq %d, %d bytes, %v; want seq 1, %d bytes equal", got.Seq, len(body), err, len(big))
	}
	listed, err := r.List("activity")
	if err != nil || len(listed) != 1 || len(listed[0].Body) != len(got.Body) {
		t.Fatalf("list: %d changes, %v", len(listed), err)
	}

	// Replaced by a small change: the pieces go with the old one.
	if err := r.Apply(wire.Down{Site: "s1", Prev: 2, Last: 3, Changes: []wire.Change{change(3, "activity", "a1", "small now")}}); err != nil {
		t.Fatal(err)
	}
	if n := countParts(t, db); n != 0 {
		t.Fatalf("%d pieces left after the large change was replaced", n)
	}
	// Large again, then deleted.
	if err := r.Apply(wire.Down{Site: "s1", Prev: 3, Last: 4, Changes: []wire.Change{change(4, "activity", "a1", string(big))}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(wire.Down{Site: "s1", Prev: 4, Last: 5, Changes: []wire.Change{{Seq: 5, Entity: "activity", ID: "a1", Deleted: true}}}); err != nil {
		t.Fatal(err)
	}
	if n := countParts(t, db); n != 0 {
		t.Fatalf("%d pieces left after the large change was deleted", n)
	}
	if _, ok, err := r.Get("activity", "a1"); err != nil || ok {
		t.Fatalf("deleted change still read: %v, %v", ok, err)
	}

	// Pieces written for a message the edge stopped before applying.
	if err := db.Update(func(txn *badger.Txn) error {
		return txn.Set(partKey(9, 0), []byte("never applied"))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if n := countParts(t, db); n != 0 {
		t.Fatalf("%d pieces of an unapplied message left after open", n)
	}
}

// A message whose changes together are more than one transaction holds
// is applied in parts, each moving the cursor to its end.
func TestMessageLargerThanATransaction(t *testing.T) {
	r := open(t)
	body := strings.Repeat("公示 notice text ", 256) // ~4 KiB each
	d := wire.Down{Site: "s1", Prev: 0, Last: 700}
	for seq := uint64(1); seq <= 600; seq++ {
		d.Changes = append(d.Changes, change(seq, "notice", "n"+strconv.FormatUint(seq, 10), body))
	}
	if err := r.Apply(d); err != nil {
		t.Fatalf("apply %d changes of %d bytes: %v", len(d.Changes), len(body), err)
	}
	if got, err := r.List("notice"); err != nil || len(got) != 600 {
		t.Fatalf("%d notices after the apply, %v; want 600", len(got), err)
	}
	if r.Cursor() != 700 {
		t.Fatalf("cursor %d, want 700", r.Cursor())
	}
}

// Messages that do not follow the cursor ask for one catch-up per second
// at most: until it arrives each live message shows the same gap, and an
// edge that cannot take a message would otherwise ask again for every part
// of every catch-up.
func TestCatchUpAskedOncePerSecond(t *testing.T) {
	r := open(t)
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	asks := func() int {
		n := 0
		for {
			select {
			case a := <-r.Acks():
				if a.CatchUp {
					n++
				}
			default:
				return n
			}
		}
	}
	gap := func(seq uint64) {
		t.Helper()
		if err := r.Apply(wire.Down{Site: "s1", Prev: seq - 1, Last: seq, Changes: []wire.Change{change(seq, "notice", "n", "x")}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		name    string
		advance time.Duration
		gaps    int
		want    int
	}{
		{"first gap asks", 0, 1, 1},
		{"20 more within the second", 900 * time.Millisecond, 20, 0},
		{"a second later, asks again", 100 * time.Millisecond, 5, 1},
	} {
		now = now.Add(step.advance)
		for i := range step.gaps {
			gap(uint64(10 + i))
			if got := asks(); i == 0 && got != step.want || i > 0 && got != 0 {
				t.Fatalf("%s: gap %d asked %d times", step.name, i, got)
			}
		}
	}
	if _, _, catchUps, _ := r.Stats(); catchUps != 2 {
		t.Fatalf("%d catch-ups asked, want 2", catchUps)
	}
}

// TestRestrictedChanges: a change for one role (an access list, for
// gateways) is taken only by an edge of that role, and when the site's
// topic carries it withheld (no body), an edge of that role applies what
// comes before it and takes the rest from the whole message on its own
// topic, whichever of the two arrives first; an edge of another role
// passes over it.
func TestRestrictedChanges(t *testing.T) {
	list := change(2, wire.EntityAccessList, "s1:B3", "list with its key")
	list.Role = wire.RoleGateway
	stub := wire.Change{Seq: 2, Entity: list.Entity, ID: list.ID, Role: list.Role, Withheld: true}
	whole := wire.Down{Site: "s1", Prev: 0, Last: 3, Changes: []wire.Change{change(1, "notice", "n1", "a"), list, change(3, "notice", "n3", "c")}}
	shared := wire.Down{Site: "s1", Prev: 0, Last: 3, Changes: []wire.Change{change(1, "notice", "n1", "a"), stub, change(3, "notice", "n3", "c")}}
	for _, c := range []struct {
		name       string
		role       string
		msgs       []wire.Down
		wantCursor []uint64 // after each message
		wantList   bool
	}{
		{"gateway: site topic first", wire.RoleGateway, []wire.Down{shared, whole}, []uint64{1, 3}, true},
		{"gateway: own topic first", wire.RoleGateway, []wire.Down{whole, shared}, []uint64{3, 3}, true},
		{"gateway: the withheld change first in its message", wire.RoleGateway,
			[]wire.Down{{Site: "s1", Prev: 0, Last: 2, Changes: []wire.Change{{Seq: 1, Entity: list.Entity, ID: list.ID, Role: list.Role, Withheld: true}, change(2, "notice", "n2", "b")}}}, []uint64{0}, false},
		{"kiosk: site topic", "kiosk", []wire.Down{shared}, []uint64{3}, false},
		{"kiosk: a whole list sent to it anyway", "kiosk", []wire.Down{whole}, []uint64{3}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := open(t)
			r.SetRole(c.role)
			for i, d := range c.msgs {
				if err := r.Apply(d); err != nil {
					t.Fatal(err)
				}
				if got := r.Cursor(); got != c.wantCursor[i] {
					t.Fatalf("after message %d: cursor %d, want %d", i, got, c.wantCursor[i])
				}
			}
			got, ok, err := r.Get(wire.EntityAccessList, "s1:B3")
			if err != nil {
				t.Fatal(err)
			}
			if ok != c.wantList || (ok && string(got.Body) != string(list.Body)) {
				t.Fatalf("access list held: %v %q, want %v", ok, got.Body, c.wantList)
			}
			if _, ok, _ := r.Get("notice", "n1"); c.wantCursor[len(c.wantCursor)-1] >= 1 && !ok {
				t.Fatal("notice n1 not applied")
			}
		})
	}
}

// A delta applies only to the version it was made from: an edge that holds
// another one (or none: the list came in a message it could not verify)
// applies the message up to that change, keeps its version, and asks for
// a catch-up, whose snapshot repairs it.
func TestDeltaForAnotherVersionCatchesUp(t *testing.T) {
	view := func(seq uint64, title string, readers ...string) wire.Change {
		b, err := event.Marshal(map[int]any{1: title, 2: strings.Repeat("text ", 60), 3: readers})
		if err != nil {
			t.Fatal(err)
		}
		return wire.Change{Seq: seq, Entity: "notice", ID: "n1", Body: b, HLC: hlc.Timestamp(seq * 10)}
	}
	v1 := view(1, "a", "r1", "r2") // the delta below fits it, and would keep the old title
	v3 := view(3, "b", "r1", "r2")
	v5 := view(5, "b", "r1", "r2", "r3")
	otherV3 := view(3, "c", "r1", "r2") // the delta fits it, and would keep title c
	otherV3.HLC = 99
	delta := func(from, to wire.Change) wire.Change {
		d, err := wire.Diff(from.Body, to.Body)
		if err != nil {
			t.Fatal(err)
		}
		return wire.Change{Seq: to.Seq, Entity: to.Entity, ID: to.ID, Base: from.Seq, BaseHLC: from.HLC, Delta: d}
	}
	for _, c := range []struct {
		name       string
		held       []wire.Down // applied first
		delta      wire.Down
		wantCursor uint64
		wantBody   []byte
		wantAsk    bool
	}{
		{"the version it was made from", []wire.Down{{Site: "s1", Prev: 0, Last: 4, Changes: []wire.Change{v3}}},
			wire.Down{Site: "s1", Prev: 4, Last: 5, Changes: []wire.Change{delta(v3, v5)}}, 5, v5.Body, false},
		{"another version", []wire.Down{{Site: "s1", Prev: 0, Last: 4, Changes: []wire.Change{v1}}},
			wire.Down{Site: "s1", Prev: 4, Last: 6, Changes: []wire.Change{delta(v3, v5), change(6, "notice", "n2", "x")}}, 4, v1.Body, true},
		{"the same seq of another history (a restored hub)", []wire.Down{{Site: "s1", Prev: 0, Last: 4, Changes: []wire.Change{otherV3}}},
			wire.Down{Site: "s1", Prev: 4, Last: 5, Changes: []wire.Change{delta(v3, v5)}}, 4, otherV3.Body, true},
		{"none", []wire.Down{{Site: "s1", Prev: 0, Last: 4}},
			wire.Down{Site: "s1", Prev: 4, Last: 5, Changes: []wire.Change{delta(v3, v5)}}, 4, nil, true},
		{"another version, after a change it applies", []wire.Down{{Site: "s1", Prev: 0, Last: 3, Changes: []wire.Change{v1}}},
			wire.Down{Site: "s1", Prev: 3, Last: 5, Changes: []wire.Change{change(4, "notice", "n2", "x"), delta(v3, v5)}}, 4, v1.Body, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := open(t)
			for _, d := range c.held {
				if err := r.Apply(d); err != nil {
					t.Fatal(err)
				}
			}
			<-r.Acks()
			if err := r.Apply(c.delta); err != nil {
				t.Fatal(err)
			}
			if got := r.Cursor(); got != c.wantCursor {
				t.Fatalf("cursor %d, want %d", got, c.wantCursor)
			}
			got, ok, err := r.Get("notice", "n1")
			if err != nil || ok != (c.wantBody != nil) || string(got.Body) != string(c.wantBody) {
				t.Fatalf("n1 held: %v %q (%v); want %q", ok, got.Body, err, c.wantBody)
			}
			a := <-r.Acks()
			if a.CatchUp != c.wantAsk || a.Cursor != c.wantCursor {
				t.Fatalf("ack %+v; want cursor %d, catch-up %v", a, c.wantCursor, c.wantAsk)
			}
			if !c.wantAsk {
				return
			}
			// The catch-up from the cursor sends n1 whole.
			if err := r.Apply(wire.Down{Site: "s1", Prev: c.wantCursor, Last: 6, Changes: []wire.Change{v5}}); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := r.Get("notice", "n1"); r.Cursor() != 6 || string(got.Body) != string(v5.Body) {
				t.Fatalf("after the catch-up: cursor %d, n1 %q", r.Cursor(), got.Body)
			}
		})
	}
}

// A delta to an entity kept split that does not fit the chunks held (an
// edit past the end of a list, made from a longer version) is found only
// inside the transaction: the edge drops what it wrote ahead, applies the
// changes before the delta (a large one among them, in chunks again) and
// asks for a catch-up from there; the entity keeps the version held.
func TestDeltaThatDoesNotFitTheChunksCatchesUp(t *testing.T) {
	view := func(seq uint64, id string, n int) wire.Change {
		readers := make([]string, n)
		for i := range readers {
			readers[i] = fmt.Sprintf("R%05d", i)
		}
		b, err := event.Marshal(map[int]any{1: "title", 3: readers})
		if err != nil {
			t.Fatal(err)
		}
		return wire.Change{Seq: seq, Entity: wire.EntityActivity, ID: id, Body: b, HLC: hlc.Timestamp(seq * 10)}
	}
	held := view(1, "A1", 3000)
	// Made from a version of 3,100 entries: it appends at entry 3,100,
	// past the end of the 3,000 held.
	longer, next := view(1, "A1", 3100), view(0, "A1", 3101)
	dl, err := wire.Diff(longer.Body, next.Body)
	if err != nil {
		t.Fatal(err)
	}
	delta := func(seq uint64) wire.Change {
		return wire.Change{Seq: seq, Entity: wire.EntityActivity, ID: "A1", HLC: hlc.Timestamp(seq * 10), Base: held.Seq, BaseHLC: held.HLC, Delta: dl}
	}
	a2 := view(2, "A2", 4000)
	for _, c := range []struct {
		name       string
		msg        wire.Down
		wantCursor uint64
		want       []wire.Change // held after the apply
		notHeld    []string      // notice ids not held
	}{
		{"first in its message", wire.Down{Site: "s1", Prev: 1, Last: 3, Changes: []wire.Change{delta(2), change(3, "notice", "n3", "x")}},
			1, nil, []string{"n3"}},
		{"after changes it applies", wire.Down{Site: "s1", Prev: 1, Last: 5, Changes: []wire.Change{a2, change(3, "notice", "n3", "x"), delta(4), change(5, "notice", "n5", "x")}},
			3, []wire.Change{a2, change(3, "notice", "n3", "x")}, []string{"n5"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := open(t)
			if err := r.Apply(wire.Down{Site: "s1", Prev: 0, Last: 1, Changes: []wire.Change{held}}); err != nil {
				t.Fatal(err)
			}
			<-r.Acks()
			err := r.db.View(func(txn *badger.Txn) error {
				h, ok, err := HeadTxn(txn, wire.EntityActivity, "A1")
				if err != nil || !ok || !h.Split {
					t.Fatalf("A1 held %v, split %v, %v; want split", ok, h.Split, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Apply(c.msg); err != nil {
				t.Fatal(err)
			}
			if got := r.Cursor(); got != c.wantCursor {
				t.Fatalf("cursor %d, want %d", got, c.wantCursor)
			}
			if a := <-r.Acks(); !a.CatchUp || a.Cursor != c.wantCursor {
				t.Fatalf("ack %+v; want a catch-up from %d", a, c.wantCursor)
			}
			for _, w := range append([]wire.Change{held}, c.want...) {
				got, ok, err := r.Get(w.Entity, w.ID)
				if err != nil || !ok || got.Seq != w.Seq || !bytes.Equal(got.Body, w.Body) {
					t.Fatalf("%s %s: held %v, seq %d (want %d), body equal %v, %v", w.Entity, w.ID, ok, got.Seq, w.Seq, bytes.Equal(got.Body, w.Body), err)
				}
			}
			for _, id := range c.notHeld {
				if _, ok, err := r.Get("notice", id); ok || err != nil {
					t.Fatalf("notice %s after the delta held %v, %v", id, ok, err)
				}
			}
			// The catch-up from the cursor sends A1 whole.
			whole := view(c.wantCursor+1, "A1", 3101)
			if err := r.Apply(wire.Down{Site: "s1", Prev: c.wantCursor, Last: whole.Seq, Changes: []wire.Change{whole}}); err != nil {
				t.Fatal(err)
			}
			if got, _, err := r.Get(wire.EntityActivity, "A1"); err != nil || !bytes.Equal(got.Body, whole.Body) {
				t.Fatalf("A1 after the catch-up: body equal %v, %v", bytes.Equal(got.Body, whole.Body), err)
			}
		})
	}
}
