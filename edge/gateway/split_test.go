package gateway

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/firmware/sht3x"
	"linli/firmware/sim"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/edgetest"
	"linli/shared/wire"
)

// TestCardAddedToASplitListIsInForce: the replica keeps a list of 40
// doors apart in chunks, so a card added to one door reaches the gateway
// as a delta without the list's body; the gateway reads the list whole
// and puts it in force.
func TestCardAddedToASplitListIsInForce(t *testing.T) {
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	rep, err := replica.Open(db, "S1", "gw-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rep.SetRole(wire.RoleGateway)
	sc, err := sim.ParseScenario([]byte(rigScenario))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Options{Config: rigConfig(), Site: "S1", Building: "B3", Log: ob, DB: db, Replica: rep,
		Hardware: rigHW{Sim: s, sht: &fakeSHT{reading: sht3x.Reading{Temperature: 22.5, Humidity: 45}}}, Sim: s})
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{9}, accesslist.KeySize)
	list := accesslist.List{Site: "S1", Building: "B3", Issued: hlc.FromTime(time.Now().Add(-time.Minute)), Key: key}
	for d := range 40 {
		door := accesslist.Door{Name: fmt.Sprintf("D%02d", d)}
		for c := range 100 {
			door.Cards = append(door.Cards, accesslist.Hash(key, fmt.Sprintf("26:%d:%d", d, c)))
		}
		slices.SortFunc(door.Cards, bytes.Compare)
		list.Doors = append(list.Doors, door)
	}
	id := accesslist.ID("S1", "B3")
	v1 := wire.Change{Seq: 1, Entity: wire.EntityAccessList, ID: id, HLC: 10}
	if v1.Body, err = event.Marshal(list); err != nil {
		t.Fatal(err)
	}
	if err := rep.Apply(wire.Down{Site: "S1", Prev: 0, Last: 1, Changes: []wire.Change{v1}}); err != nil {
		t.Fatal(err)
	}
	card := accesslist.Hash(key, "26:7:999")
	i, _ := slices.BinarySearchFunc(list.Doors[7].Cards, card, bytes.Compare)
	list.Doors[7].Cards = slices.Insert(list.Doors[7].Cards, i, card)
	list.Issued = hlc.FromTime(time.Now())
	body, err := event.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	d, err := wire.Diff(v1.Body, body)
	if err != nil {
		t.Fatal(err)
	}
	delta := wire.Change{Seq: 2, Entity: wire.EntityAccessList, ID: id, HLC: 20, Base: 1, BaseHLC: 10, Delta: d}
	if err := rep.Apply(wire.Down{Site: "S1", Prev: 1, Last: 2, Changes: []wire.Change{delta}}); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := rep.Get(wire.EntityAccessList, id); err != nil || !ok || !bytes.Equal(got.Body, body) {
		t.Fatalf("the replica's list: %v, %v", ok, err)
	}
	if st := g.ListState(); st.Doors["D07"] != 101 || st.Refused != 0 {
		t.Fatalf("list in force: door D07 has %d cards (want 101), %d lists refused", st.Doors["D07"], st.Refused)
	}
}
