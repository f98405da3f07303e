package seats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/merge"
	"linli/shared/wire"
)

// A check-in to a busy activity costs what a check-in costs, not the size
// of the activity's lists: the view (20,000 residents here) is decoded
// once per version the replica applies, not per check-in. A new version
// is read at once (a cancellation refuses the next check-in).
func TestCheckinReadsTheViewOncePerVersion(t *testing.T) {
	ob, err := outbox.Open(outbox.Options{Dir: t.TempDir(), Device: "kiosk-1", GCInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	rep, err := replica.Open(ob.DB(), "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s := New(ob, rep, slog.New(slog.DiscardHandler))
	v := merge.ActivityView{ID: "A1", Title: "义诊", Kind: "activity", Site: "s1", Kiosks: []merge.KioskShare{},
		Start: time.Now().Add(48 * time.Hour).UnixMilli(), End: time.Now().Add(50 * time.Hour).UnixMilli(),
		CheckinOpens: time.Now().Add(47 * time.Hour).UnixMilli()}
	for i := range 20_000 {
		v.Confirmed = append(v.Confirmed, fmt.Sprintf("R%06d", i))
	}
	seq := uint64(0)
	apply := func() {
		t.Helper()
		body, err := event.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if err := rep.Apply(wire.Down{Site: "s1", Prev: seq - 1, Last: seq,
			Changes: []wire.Change{{Seq: seq, Entity: wire.EntityActivity, ID: "A1", Body: body}}}); err != nil {
			t.Fatal(err)
		}
	}
	apply()
	ctx := context.Background()
	n := 0
	checkin := func() error {
		n++
		_, a, err := s.Checkin(ctx, &event.Checkin{Resident: fmt.Sprintf("N%06d", n), Activity: "A1", Action: "in"})
		if err == nil && a.Act != event.ActSignup {
			err = fmt.Errorf("answer %+v, want a sign-up", a)
		}
		return err
	}
	if err := checkin(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if err := checkin(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3000 {
		t.Fatalf("%.0f allocations per check-in: the 20,000-resident view is decoded each time", allocs)
	}
	v.Cancelled = true
	apply()
	if err := checkin(); !errors.Is(err, ErrCancelled) {
		t.Fatalf("check-in after the cancellation: %v, want ErrCancelled", err)
	}
}
