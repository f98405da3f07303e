package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"linli/hub/downlink"
	"linli/hub/state"
	"linli/hub/store"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
)

// A community's history as the hub stores it, for the start-up scenario:
// the building gateways' sensor readings and door decisions make almost all
// of it, the lobby kiosks' governance (check-ins, reports, "me too"s,
// ratings) and the operators' decisions (activities, report status) the
// rest, which is also what the merged state folds.
const (
	historyGateways  = 30     // one per building: doors and sensors
	historyKiosks    = 6      // lobby kiosks
	historyGovPer    = 15     // governance events per 1,000
	historyReadPer   = 600    // readings per 1,000; the rest are door decisions
	historyBatch     = 50_000 // events per commit
	historyResidents = 5_000
	historyCards     = 4_000
	// historyPerDay is the community's pace: 1,000,000 events are 80
	// days of it, 10,000,000 are 800 days. More events are a longer
	// history of the same community, not a busier one, so what is recent
	// (open reports, coming activities) stays the same size while the
	// past grows. The hubs start with retention off, so the store holds
	// every event.
	historyPerDay = 12_500
	// historyActivityHours is how long each activity lasts.
	historyActivityHours = 8
)

// historyKeepAll are the hub flags of every start on a history: keep every
// raw event, so the stored history is the whole of it.
var historyKeepAll = []string{"--keep-readings", "0", "--keep-access", "0"}

// historySpan is the time n events of the community take.
func historySpan(n int) time.Duration {
	return time.Duration(float64(n) / historyPerDay * float64(24*time.Hour))
}

// discard is a downlink publisher for a hub with no edges.
type discard struct{}

func (discard) Publish(string, []byte, bool) error { return nil }

// historyStats is what writeHistory stored.
type historyStats struct {
	events, reports, activities int
	took                        time.Duration
	reportIDs                   []string          // every report filed, oldest first
	lastSeq                     map[string]uint64 // each device's last seq
}

// writeHistory appends n events of the community's mix to the hub store
// in dir (created by the hub itself, so it carries the hub's layout
// version) through the hub's own store and merged-state packages, in
// commits of historyBatch events: the events, the devices' records, the
// facts and the downlink changes, as ingest would have committed them.
// Operator decisions are recorded through the merged state as the API
// records them.
func writeHistory(ctx context.Context, dir string, n int, log *slog.Logger) (*historyStats, error) {
	start := time.Now()
	st, err := store.Open(dir, kv.Server, log)
	if err != nil {
		return nil, err
	}
	// Operators decide in the history's time, not the harness's: a
	// report resolved two years ago is two years old to the hub.
	t0 := time.Now().Add(-historySpan(n))
	simNow := t0
	clock := hlc.NewClock(func() time.Time { return simNow }, 0)
	down, err := downlink.Open(st, discard{}, clock, nil, log)
	if err != nil {
		return nil, closeAfter(st, err)
	}
	ms, err := state.Open(state.Options{Store: st, Downlink: down, Clock: clock, HubID: "hub",
		Kiosks: func(string) []string { return nil }, Logger: log})
	if err != nil {
		return nil, closeAfter(st, err)
	}
	cards := make([]string, historyCards)
	for i := range cards {
		cards[i] = accesslist.Pseudonym(accesslist.Hash(cardKey, "C"+strconv.Itoa(i)))
	}
	g := &historyGen{n: n, cards: cards, seqs: map[string]uint64{}, lastReport: map[string]string{},
		t0: t0, devices: map[string]*store.DeviceRecord{}, lastActivity: -1}
	stats := &historyStats{}
	for from := 0; from < n; from += historyBatch {
		if err := ctx.Err(); err != nil {
			return nil, closeAfter(st, err)
		}
		to := min(from+historyBatch, n)
		simNow = g.at(from)
		// The activities this stretch's check-ins are for, and the status
		// of the reports the last stretch filed (accepted) and of those
		// the stretch before filed (resolved), as operators set them.
		var decisions []event.Body
		for a := g.activityOf(from); a <= g.activityOf(to-1); a++ {
			if a > g.lastActivity {
				decisions = append(decisions, &event.ActivitySet{ID: "A" + strconv.Itoa(a), Title: "太极拳晨练 " + strconv.Itoa(a),
					Type: "activity", Site: benchSite, Start: g.at(from).UnixMilli(),
					End: g.at(from).Add(historyActivityHours * time.Hour).UnixMilli(), Capacity: 60})
				g.lastActivity = a
				stats.activities++
			}
		}
		for _, id := range g.accepted {
			decisions = append(decisions, &event.ReportPatch{Report: id, Status: event.ReportResolved, Note: "已修好", Who: "op1"})
		}
		for _, id := range g.filed {
			decisions = append(decisions, &event.ReportPatch{Report: id, Status: event.ReportAccepted, Note: "已派物业", Who: "op1"})
		}
		g.accepted, g.filed = g.filed, g.accepted[:0]
		if len(decisions) > 0 {
			if _, err := ms.Record(decisions...); err != nil {
				return nil, closeAfter(st, fmt.Errorf("operator decisions: %w", err))
			}
		}
		b := st.NewBatch()
		bySite := map[string][]event.Event{}
		touched := map[string]bool{}
		for i := from; i < to; i++ {
			ev, err := g.event(i)
			if err != nil {
				b.Discard()
				return nil, closeAfter(st, err)
			}
			stored := ev
			stored.Device = ""
			enc, err := stored.Encode()
			if err != nil {
				b.Discard()
				return nil, closeAfter(st, err)
			}
			b.PutEvent(benchSite, &ev, enc)
			d := g.device(ev.Device)
			d.Received++
			d.Cover(ev.Seq, ev.Seq)
			touched[ev.Device] = true
			bySite[benchSite] = append(bySite[benchSite], ev)
			if ev.Kind == event.KindReport {
				stats.reports++
				stats.reportIDs = append(stats.reportIDs, event.FormatID(ev.Device, ev.Seq))
			}
		}
		if err := ms.Apply(b, bySite); err != nil {
			b.Discard()
			ms.Aborted()
			return nil, closeAfter(st, err)
		}
		for id := range touched {
			b.PutDevice(g.devices[id])
		}
		if err := b.Commit(); err != nil {
			ms.Aborted()
			return nil, closeAfter(st, err)
		}
		ms.Committed()
		stats.events = to
	}
	stats.lastSeq = g.seqs
	if err := st.Close(); err != nil {
		return nil, err
	}
	stats.took = time.Since(start)
	return stats, nil
}

func closeAfter(st *store.Store, err error) error {
	if cerr := st.Close(); cerr != nil {
		return fmt.Errorf("%w (and closing the store: %v)", err, cerr)
	}
	return err
}

// historyGen makes the i-th event of the history.
type historyGen struct {
	n            int
	t0           time.Time
	cards        []string
	seqs         map[string]uint64
	devices      map[string]*store.DeviceRecord
	lastReport   map[string]string // kiosk → its last report's id, for "me too"s
	filed        []string          // reports filed since the last operator decisions
	accepted     []string          // reports accepted at the last operator decisions, resolved at the next
	lastActivity int
}

// at is when the i-th event was recorded, at the community's pace.
func (g *historyGen) at(i int) time.Time {
	return g.t0.Add(historySpan(i))
}

// activityOf is the activity the check-ins around event i are for: a new
// one every 4,000 events (60 check-ins each).
func (g *historyGen) activityOf(i int) int { return i / 4000 }

func (g *historyGen) device(id string) *store.DeviceRecord {
	d := g.devices[id]
	if d == nil {
		d = &store.DeviceRecord{ID: id, Site: benchSite, Role: "gateway", First: g.t0}
		if id[0] == 'k' {
			d.Role = "kiosk"
		}
		g.devices[id] = d
	}
	return d
}

func (g *historyGen) event(i int) (event.Event, error) {
	k := i % 1000
	var dev string
	var body event.Body
	r := "R" + strconv.Itoa(1000+i*7919%historyResidents)
	if k < historyGovPer {
		dev = "kiosk-b" + strconv.Itoa(1+i/1000%historyKiosks)
		switch {
		case k < 9:
			action := "in"
			if k%3 == 2 {
				action = "out"
			}
			body = &event.Checkin{Resident: r, Activity: "A" + strconv.Itoa(g.activityOf(i)), Action: action, Status: event.StatusRecorded}
		case k < 11:
			body = &event.Report{Category: event.Categories[i%len(event.Categories)], Title: "楼道灯不亮 " + strconv.Itoa(i%100),
				Description: "3 单元 " + strconv.Itoa(1+i%18) + " 楼的灯坏了", Building: "B" + strconv.Itoa(1+i%historyGateways),
				Unit: fmt.Sprintf("%d-%d02", 1+i%3, 1+i%18), Resident: r}
		case k < 13:
			if rep := g.lastReport[dev]; rep != "" {
				body = &event.Vote{Report: rep, Resident: r}
			} else {
				body = &event.Rating{Resident: r, Target: "A" + strconv.Itoa(g.activityOf(i)), Score: 1 + i%5}
			}
		default:
			body = &event.Rating{Resident: r, Target: "A" + strconv.Itoa(g.activityOf(i)), Score: 1 + i%5}
		}
	} else {
		b := 1 + i%historyGateways
		dev = "gw-b" + strconv.Itoa(b)
		building := "B" + strconv.Itoa(b)
		if k < historyGovPer+historyReadPer {
			if k%2 == 0 {
				body = &event.Reading{Sensor: building + "-t-" + strconv.Itoa(i%8), Type: "temperature", Value: 18 + float64(i%90)/10, Building: building}
			} else {
				body = &event.Reading{Sensor: building + "-h-" + strconv.Itoa(i%8), Type: "humidity", Value: 35 + float64(i%300)/10, Building: building}
			}
		} else {
			res, reason := "granted", ""
			switch {
			case i%20011 == 0:
				res = "forced" // a door forced open: an alarm, and a fact
			case i%53 == 0:
				res, reason = "denied", "not_listed"
			}
			body = &event.Access{Door: building + "-main", Credential: g.cards[i*31%len(g.cards)], Result: res, Building: building, Reason: reason}
		}
	}
	g.seqs[dev]++
	seq := g.seqs[dev]
	ev, err := event.NewEvent(dev, seq, hlc.FromTime(g.at(i)), body)
	if err != nil {
		return ev, err
	}
	if _, ok := body.(*event.Report); ok {
		id := event.FormatID(dev, seq)
		g.lastReport[dev] = id
		g.filed = append(g.filed, id)
	}
	return ev, nil
}
