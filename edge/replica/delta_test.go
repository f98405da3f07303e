package replica_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"pgregory.net/rapid"

	"linli/edge/replica"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/merge"
	"linli/shared/wire"
)

const (
	site1   = "s1"
	gateway = "gw-1"
)

// testHub is the hub's downlink log as the wire describes it (edge
// packages may not import the hub's): each commit's changes get the next
// seqs; the log keeps each entity's newest change whole; a live message
// carries a change as a delta from the version the previous commit left;
// restricted changes go whole on the device's own topic and withheld on
// the site's; a catch-up sends the snapshots after a cursor.
type testHub struct {
	head uint64
	log  map[string]wire.Change // entity/id → newest change, whole
}

func (h *testHub) commit(t *rapid.T, cs []wire.Change) (site, own wire.Down) {
	prev := h.head
	bases := map[string]wire.Change{}
	var live []wire.Change
	for _, c := range cs {
		h.head++
		c.Seq, c.HLC = h.head, hlc.Timestamp(h.head*10)
		k := c.Entity + "/" + c.ID
		if _, ok := bases[k]; !ok {
			bases[k] = h.log[k]
		}
		live = slices.DeleteFunc(live, func(l wire.Change) bool { return l.Entity == c.Entity && l.ID == c.ID })
		h.log[k] = c
		if b := bases[k]; b.Seq != 0 && !b.Deleted && !c.Deleted {
			d, err := wire.Diff(b.Body, c.Body)
			if err != nil {
				t.Fatal(err)
			}
			c.Base, c.BaseHLC, c.Delta, c.Body = b.Seq, b.HLC, d, nil
		}
		live = append(live, c)
	}
	own = wire.Down{Site: site1, Prev: prev, Last: h.head, Changes: live}
	site = own
	site.Changes = make([]wire.Change, len(live))
	for i, c := range live {
		if c.Restricted() {
			c.Body, c.Deleted, c.Withheld, c.Base, c.BaseHLC, c.Delta = nil, false, true, 0, 0, nil
		}
		site.Changes[i] = c
	}
	return site, own
}

func (h *testHub) catchUp(cursor uint64) wire.Down {
	d := wire.Down{Site: site1, Prev: cursor, Last: h.head}
	for _, c := range h.log {
		if c.Seq > cursor {
			d.Changes = append(d.Changes, c)
		}
	}
	slices.SortFunc(d.Changes, func(a, b wire.Change) int { return int(a.Seq) - int(b.Seq) })
	return d
}

// model is the hub's entities as the test changes them.
type model struct {
	acts  map[string]*merge.ActivityView
	lists map[string]*accesslist.List
	issue int64
}

var filler = strings.Repeat("社区活动 community activity ", 12) // keeps bodies above the delta threshold

func (m *model) body(t *rapid.T, entity, id string) []byte {
	var v any
	switch entity {
	case wire.EntityActivity:
		if a := m.acts[id]; a != nil {
			v = a
		}
	case wire.EntityAccessList:
		if l := m.lists[id]; l != nil {
			v = l
		}
	}
	if v == nil {
		return nil
	}
	b, err := event.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// step changes one entity of m at random and returns its change.
func (m *model) step(t *rapid.T) wire.Change {
	resident := fmt.Sprintf("R%02d", rapid.IntRange(0, 30).Draw(t, "resident"))
	if rapid.Bool().Draw(t, "activity") {
		id := rapid.SampledFrom([]string{"A1", "A2"}).Draw(t, "act")
		a := m.acts[id]
		op := rapid.IntRange(0, 6).Draw(t, "op")
		switch {
		case a == nil || op == 0:
			a = &merge.ActivityView{ID: id, Title: "t", Site: site1, Capacity: 10, Confirmed: []string{}, Waitlist: []string{},
				Kiosks: []merge.KioskShare{}, Description: filler}
			m.acts[id] = a
		case op == 1:
			delete(m.acts, id)
		case op == 2:
			if i, ok := slices.BinarySearch(a.Confirmed, resident); !ok {
				a.Confirmed = slices.Insert(a.Confirmed, i, resident)
			}
		case op == 3:
			if i, ok := slices.BinarySearch(a.Confirmed, resident); ok {
				a.Confirmed = slices.Delete(a.Confirmed, i, i+1)
			}
		case op == 4:
			if !slices.Contains(a.Waitlist, resident) {
				a.Waitlist = append(a.Waitlist, resident)
			}
		case op == 5:
			if len(a.Waitlist) > 0 { // promoted: first in the queue
				a.Waitlist = slices.Delete(a.Waitlist, 0, 1)
			}
		default:
			a.Title = rapid.SampledFrom([]string{"义诊", "Clinic", "茶话会"}).Draw(t, "title")
			a.SeatsLeft = uint32(rapid.IntRange(0, 10).Draw(t, "left"))
		}
		return wire.Change{Entity: wire.EntityActivity, ID: id, Body: m.body(t, wire.EntityActivity, id), Deleted: m.acts[id] == nil}
	}
	id := accesslist.ID(site1, "B1")
	l := m.lists[id]
	m.issue++
	card := bytes.Repeat([]byte{byte(rapid.IntRange(0, 40).Draw(t, "card"))}, accesslist.HashSize)
	door := rapid.SampledFrom([]string{"east", "north", "west"}).Draw(t, "door")
	switch op := rapid.IntRange(0, 5).Draw(t, "listop"); {
	case l == nil || op == 0:
		l = &accesslist.List{Site: site1, Building: "B1", Key: bytes.Repeat([]byte{7}, accesslist.KeySize),
			Doors: []accesslist.Door{{Name: "east", Cards: [][]byte{}}, {Name: "north", Cards: [][]byte{}}, {Name: "west", Cards: [][]byte{}}}}
		for i := range 20 {
			l.Doors[1].Cards = append(l.Doors[1].Cards, bytes.Repeat([]byte{byte(100 + i)}, accesslist.HashSize))
		}
		m.lists[id] = l
	case op == 1:
		delete(m.lists, id)
	default:
		d := &l.Doors[slices.IndexFunc(l.Doors, func(d accesslist.Door) bool { return d.Name == door })]
		i, found := slices.BinarySearchFunc(d.Cards, card, bytes.Compare)
		if op%2 == 0 && !found {
			d.Cards = slices.Insert(d.Cards, i, card)
		} else if found {
			d.Cards = slices.Delete(d.Cards, i, i+1)
		}
	}
	if l := m.lists[id]; l != nil {
		l.Issued = hlc.Timestamp(m.issue)
	}
	return wire.Change{Entity: wire.EntityAccessList, ID: id, Role: wire.RoleGateway,
		Body: m.body(t, wire.EntityAccessList, id), Deleted: m.lists[id] == nil}
}

// A gateway's replica fed the hub's live messages — deltas among them,
// on the site's topic and on its own — shuffled, duplicated and with some
// lost, and then caught up as it asks, holds exactly the hub's entities:
// the same bytes as their snapshots.
// TestDeltasConvergeToTheSnapshot runs with the replica's sizes as they
// are (the model's entities are stored whole) and with entities split at
// 200 bytes into chunks of 12 bytes (three residents), so that every delta
// edits chunks.
func TestDeltasConvergeToTheSnapshot(t *testing.T) {
	t.Run("whole", func(t *testing.T) { testDeltasConverge(t) })
	t.Run("split", func(t *testing.T) {
		defer replica.SetSplitSizes(200, 12)()
		if chunks := testDeltasConverge(t); chunks == 0 {
			t.Fatal("no entity was kept split")
		}
	})
}

// testDeltasConverge returns how many chunks of split entities the
// replicas held at the ends of the runs.
func testDeltasConverge(t *testing.T) (chunks int) {
	log := slog.New(slog.DiscardHandler)
	db, err := kv.Open(t.TempDir(), kv.Small, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deltas, runs := 0, 0
	rapid.Check(t, func(t *rapid.T) {
		runs++
		if _, err := kv.DeleteAll(db, []byte("r/")); err != nil { // a wiped replica
			t.Fatal(err)
		}
		rep, err := replica.Open(db, site1, gateway, log)
		if err != nil {
			t.Fatal(err)
		}
		rep.SetRole(wire.RoleGateway)
		h := &testHub{log: map[string]wire.Change{}}
		m := &model{acts: map[string]*merge.ActivityView{}, lists: map[string]*accesslist.List{}}

		var msgs []wire.Down
		for range rapid.IntRange(1, 40).Draw(t, "commits") {
			var cs []wire.Change
			for range rapid.IntRange(1, 3).Draw(t, "changes") {
				cs = append(cs, m.step(t))
			}
			site, own := h.commit(t, cs)
			for _, c := range own.Changes {
				if c.Delta != nil {
					deltas++
				}
			}
			msgs = append(msgs, site, own)
		}

		// Delivered late (by up to three places), twice or never.
		type delivery struct {
			at int
			d  wire.Down
		}
		var order []delivery
		for i, d := range msgs {
			if rapid.IntRange(0, 5).Draw(t, "lost") == 0 {
				continue
			}
			order = append(order, delivery{i + rapid.IntRange(0, 6).Draw(t, "late"), d})
			if rapid.IntRange(0, 5).Draw(t, "twice") == 0 {
				order = append(order, delivery{i + rapid.IntRange(0, 12).Draw(t, "again"), d})
			}
		}
		slices.SortStableFunc(order, func(a, b delivery) int { return a.at - b.at })
		for _, o := range order {
			if err := rep.Apply(o.d); err != nil {
				t.Fatalf("apply (%d, %d]: %v", o.d.Prev, o.d.Last, err)
			}
		}
		// Catch up as the edge asks, until it reaches the head.
		for round := 0; rep.Cursor() != h.head; round++ {
			if round == 5 {
				t.Fatalf("cursor %d after %d catch-ups; head %d", rep.Cursor(), round, h.head)
			}
			if err := rep.Apply(h.catchUp(rep.Cursor())); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range []struct{ entity, id string }{
			{wire.EntityActivity, "A1"}, {wire.EntityActivity, "A2"}, {wire.EntityAccessList, accesslist.ID(site1, "B1")},
		} {
			want := m.body(t, e.entity, e.id)
			got, ok, err := rep.Get(e.entity, e.id)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (want != nil) || !bytes.Equal(got.Body, want) {
				t.Fatalf("%s %s on the edge: held %v, %x\nthe hub's: %x", e.entity, e.id, ok, got.Body, want)
			}
		}
		chunks += countKeys(t, db, "r/c/")
	})
	if deltas == 0 {
		t.Fatalf("no delta sent in %d runs", runs)
	}
	return chunks
}

func countKeys(t *rapid.T, db *badger.DB, prefix string) int {
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = []byte(prefix), false
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
