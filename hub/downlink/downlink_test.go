package downlink

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"pgregory.net/rapid"

	"linli/hub/store"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/identity"
	"linli/shared/kv"
	"linli/shared/test/storetest"
	"linli/shared/wire"
)

type topicPub struct {
	mu   sync.Mutex
	msgs map[string][][]byte
}

func (p *topicPub) Publish(topic string, payload []byte, _ bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs[topic] = append(p.msgs[topic], payload)
	return nil
}

type gateways struct{}

func (gateways) Role(_, d string) string {
	if d == "gw-1" {
		return wire.RoleGateway
	}
	return ""
}
func (gateways) OfRole(_, r string) []string {
	if r == wire.RoleGateway {
		return []string{"gw-1"}
	}
	return nil
}

// One card added to a building's 50,000-card list goes down to its gateway
// in a signed message under 1 KB, which turns the list the gateway holds
// into the new one; a catch-up still sends the list whole.
func TestOneCardOfAFiftyThousandCardList(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) {
		testOneCardOfAFiftyThousandCardList(t, st)
	})
}

func testOneCardOfAFiftyThousandCardList(t *testing.T, st store.Backend) {
	log := slog.New(slog.DiscardHandler)
	key, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := &topicPub{msgs: map[string][][]byte{}}
	l, err := Open(st, pub, hlc.NewClock(nil, 0), func(p []byte) ([]byte, error) { return identity.Sign(key, "hub", p) }, log)
	if err != nil {
		t.Fatal(err)
	}
	l.SetDevices(gateways{})
	card := func(i int) []byte {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		return h[:accesslist.HashSize]
	}
	list := accesslist.List{Site: "s1", Building: "B1", Issued: 1, Key: bytes.Repeat([]byte{7}, accesslist.KeySize),
		Doors: []accesslist.Door{{Name: "east"}, {Name: "main"}}}
	for i := range 50_000 {
		list.Doors[1].Cards = append(list.Doors[1].Cards, card(i))
	}
	slices.SortFunc(list.Doors[1].Cards, bytes.Compare)
	commit := func() (body []byte, sent []byte) {
		t.Helper()
		body, err := event.Marshal(list)
		if err != nil {
			t.Fatal(err)
		}
		b := st.NewBatch()
		if err := l.Append(b, "s1", []wire.Change{{Entity: wire.EntityAccessList, ID: accesslist.ID("s1", "B1"), Role: wire.RoleGateway, Body: body}}); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		pub.msgs = map[string][][]byte{}
		l.Commit()
		own := pub.msgs[wire.Topic("s1", "gw-1", wire.LeafDown)]
		if len(own) != 1 {
			t.Fatalf("%d messages to the gateway, want 1", len(own))
		}
		return body, own[0]
	}
	before, first := commit()
	if len(first) < 50_000*accesslist.HashSize {
		t.Fatalf("the first list went down in %d bytes: not whole", len(first))
	}
	list.Issued = 2
	added := card(50_000)
	i, _ := slices.BinarySearchFunc(list.Doors[1].Cards, added, bytes.Compare)
	list.Doors[1].Cards = slices.Insert(list.Doors[1].Cards, i, added)
	after, sent := commit()
	if len(sent) >= 1024 {
		t.Fatalf("one card added sent %d bytes (the list is %d); want under 1 KB", len(sent), len(after))
	}
	payload, err := identity.Open(sent, key.Public().(ed25519.PublicKey), "hub")
	if err != nil {
		t.Fatal(err)
	}
	d, err := wire.DecodeDown(payload)
	if err != nil || len(d.Changes) != 1 || d.Changes[0].Delta == nil || d.Changes[0].Base != 1 {
		t.Fatalf("message %+v (%v); want one delta from version 1", d, err)
	}
	got, err := wire.Patch(before, d.Changes[0].Delta)
	if err != nil || !bytes.Equal(got, after) {
		t.Fatalf("the delta applied to the list held does not give the new list (%v)", err)
	}
	t.Logf("one card added to a 50,000-card list: %d bytes signed (the list: %d bytes)", len(sent), len(after))

	pub.msgs = map[string][][]byte{}
	if err := l.CatchUp("s1", "gw-1", 0); err != nil {
		t.Fatal(err)
	}
	caught := pub.msgs[wire.Topic("s1", "gw-1", wire.LeafDown)]
	if len(caught) == 0 {
		t.Fatal("no catch-up sent")
	}
	for _, m := range caught {
		p, _ := identity.Payload(m)
		d, err := wire.DecodeDown(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Changes {
			if c.Delta != nil || !bytes.Equal(c.Body, after) {
				t.Fatalf("catch-up sent change %d as a delta or not the newest list", c.Seq)
			}
		}
	}
}

// What the log publishes live — deltas from each entity's previous
// version, changes superseded within a commit dropped — turns an edge that
// applies every message in order into the log's snapshot, byte for byte,
// whatever the commits change.
func TestLiveDeltasFollowTheLog(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) { testLiveDeltasFollowTheLog(t, st) })
}

// clearLog deletes every change of the log from st.
func clearLog(t interface{ Fatal(...any) }, st store.Backend) {
	var keys [][]byte
	err := st.View(func(v store.View) error {
		return v.Scan([]byte(prefix), nil, 0, func(k, _ []byte, _ uint64) (bool, error) {
			keys = append(keys, k)
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	for _, k := range keys {
		b.Delete(k)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

func testLiveDeltasFollowTheLog(t *testing.T, st store.Backend) {
	log := slog.New(slog.DiscardHandler)
	rapid.Check(t, func(t *rapid.T) {
		clearLog(t, st)
		pub := &topicPub{msgs: map[string][][]byte{}}
		l, err := Open(st, pub, hlc.NewClock(nil, 0), nil, log)
		if err != nil {
			t.Fatal(err)
		}
		lists := map[string][]string{}
		held := map[string]wire.Change{} // what an in-order edge holds
		for range rapid.IntRange(1, 30).Draw(t, "commits") {
			var cs []wire.Change
			for range rapid.IntRange(1, 4).Draw(t, "changes") {
				id := rapid.SampledFrom([]string{"A1", "A2", "A3"}).Draw(t, "id")
				r := fmt.Sprintf("R%03d", rapid.IntRange(0, 60).Draw(t, "resident"))
				c := wire.Change{Entity: wire.EntityActivity, ID: id}
				switch op := rapid.IntRange(0, 9).Draw(t, "op"); {
				case op == 0:
					delete(lists, id)
					c.Deleted = true
				case op < 6:
					if i, ok := slices.BinarySearch(lists[id], r); !ok {
						lists[id] = slices.Insert(lists[id], i, r)
					}
				default:
					if i, ok := slices.BinarySearch(lists[id], r); ok {
						lists[id] = slices.Delete(lists[id], i, i+1)
					}
				}
				if !c.Deleted {
					c.Body, _ = event.Marshal(map[int]any{1: id, 2: strings.Repeat("活动 ", 60), 3: append([]string{}, lists[id]...)})
				}
				cs = append(cs, c)
			}
			b := st.NewBatch()
			if err := l.Append(b, "s1", cs); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
			l.Commit()
			for _, p := range pub.msgs[wire.SiteDown("s1")] {
				d, err := wire.DecodeDown(p)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range d.Changes {
					if c.Delta != nil {
						h := held[c.ID]
						if h.Seq != c.Base || h.HLC != c.BaseHLC || h.Deleted {
							t.Fatalf("delta of %s from %d/%d; the edge holds %d/%d", c.ID, c.Base, c.BaseHLC, h.Seq, h.HLC)
						}
						if c.Body, err = wire.Patch(h.Body, c.Delta); err != nil {
							t.Fatal(err)
						}
						c.Delta = nil
					}
					held[c.ID] = c
				}
			}
			pub.msgs = map[string][][]byte{}
		}
		if err := l.CatchUp("s1", "k1", 0); err != nil {
			t.Fatal(err)
		}
		snap := map[string]wire.Change{}
		for _, p := range pub.msgs[wire.Topic("s1", "k1", wire.LeafDown)] {
			d, err := wire.DecodeDown(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range d.Changes {
				snap[c.ID] = c
			}
		}
		for _, id := range []string{"A1", "A2", "A3"} {
			s, h := snap[id], held[id]
			if s.Seq != h.Seq || s.Deleted != h.Deleted || !bytes.Equal(s.Body, h.Body) {
				t.Fatalf("%s: the edge holds %d %x, the snapshot is %d %x", id, h.Seq, h.Body, s.Seq, s.Body)
			}
		}
	})
}

// Open reads where each site's log stands and which entity each change is
// of, not the changes' bodies: the log holds the latest view of every
// report and activity a site ever had, and decoding them all made every
// hub start allocate the views of its whole history. What Open allocates
// stays below the stored bytes (the store's own read copies them once;
// decoding the bodies copied them again).
func TestOpenDoesNotDecodeBodies(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(t.TempDir(), kv.Server, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := Open(st, discardPub{}, hlc.NewClock(nil, 0), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte{0x41}, 16<<10)
	view, err := event.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	for i := 0; i < n; i += 100 {
		b := st.NewBatch()
		var changes []wire.Change
		for j := i; j < i+100; j++ {
			changes = append(changes, wire.Change{Entity: wire.EntityReport, ID: fmt.Sprintf("k1.%d", j), Body: view})
		}
		if err := l.Append(b, "s1", changes); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		l.Commit()
	}
	stored := uint64(n * len(view))
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	// What reading the log costs the store itself.
	scan := allocated(func() {
		err = st.View(func(v store.View) error {
			return v.Scan([]byte(prefix), nil, 0, func([]byte, []byte, uint64) (bool, error) { return true, nil })
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	var l2 *Log
	open := allocated(func() { l2, err = Open(st, discardPub{}, hlc.NewClock(nil, 0), nil, log) })
	if err != nil {
		t.Fatal(err)
	}
	if l2.Head("s1") != l.Head("s1") {
		t.Fatalf("reopened at seq %d, want %d", l2.Head("s1"), l.Head("s1"))
	}
	if open > scan+stored/2 {
		t.Fatalf("Open allocated %d bytes, the store's read of the log %d, the bodies %d: Open decodes them", open, scan, stored)
	}
}

type discardPub struct{}

func (discardPub) Publish(string, []byte, bool) error { return nil }
