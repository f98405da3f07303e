package lease_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linli/hub/brokerclient"
	"linli/hub/ingest"
	"linli/hub/lease"
	"linli/hub/pgstore"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// runWorker is a hub worker's receiving side as the hub wires it: a
// PostgreSQL store, a session with the external broker, the ingest, and
// the lease manager whose Acquired and Lost take sites on and give them
// up in the ingest. It runs until ctx ends, then hands its sites over.
func runWorker(ctx context.Context, url, broker, id string, sites []string, timing lease.Options, log *slog.Logger) error {
	pg, err := pgstore.Open(ctx, url, log)
	if err != nil {
		return err
	}
	defer pg.Close()
	cl, err := brokerclient.Dial(ctx, brokerclient.Options{Broker: broker, ClientID: id, Logger: log})
	if err != nil {
		return err
	}
	defer cl.Close()
	in, err := ingest.New(ingest.Options{Store: ingest.PostgresStore{Store: pg}, Transport: cl, Clock: hlc.NewClock(nil, 0),
		AllowUnsigned: true, Leased: true, Decoders: 1, Logger: log})
	if err != nil {
		return err
	}
	opts := timing
	opts.Pool, opts.ID, opts.Logger = pg.Pool(), id, log
	opts.Sites = func() []string { return sites }
	opts.Acquired = func(sites []string) map[string]error {
		refused := map[string]error{}
		for _, site := range sites {
			if err := in.AddSite(site); err != nil {
				refused[site] = err
			}
		}
		return refused
	}
	opts.Lost = func(site string) {
		if err := in.RemoveSite(site); err != nil {
			log.Error("give site up", "site", site, "err", err)
		}
	}
	m, err := lease.New(opts)
	if err != nil {
		return err
	}
	ictx, stopIngest := context.WithCancel(context.Background())
	ingestDone := make(chan error, 1)
	go func() { ingestDone <- in.Run(ictx) }()
	err = m.Run(ctx) // hands every site over before it returns
	stopIngest()
	return errors.Join(err, <-ingestDone)
}

// uplink is a small edge: it sends seqs 1..total in batches, keeps at
// most window unacked, and resends from its ack after a second of
// silence, as the edge's uplink does.
type uplink struct {
	site, id string
	c        paho.Client
	acks     chan uint64

	mu    sync.Mutex
	acked uint64
}

func startUplink(t *testing.T, broker, site, id string) *uplink {
	t.Helper()
	u := &uplink{site: site, id: id, acks: make(chan uint64, 64)}
	u.c = paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	if tok := u.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { u.c.Disconnect(100) })
	tok := u.c.Subscribe(wire.Topic(site, id, wire.LeafAck), 1, func(_ paho.Client, m paho.Message) {
		if a, err := wire.DecodeAck(m.Payload()); err == nil {
			select {
			case u.acks <- a.Acked:
			default: // a later one follows
			}
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", id, tok.Error())
	}
	return u
}

func (u *uplink) Acked() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.acked
}

// run sends until every seq up to total is acked or ctx ends.
func (u *uplink) run(ctx context.Context, total uint64) error {
	const batch, window = 10, 50
	clock := hlc.NewClock(nil, 0)
	next := uint64(1)
	last := time.Now()
	for u.Acked() < total {
		acked := u.Acked()
		for next <= total && next-acked <= window {
			to := min(next+batch-1, total)
			var evs []event.Event
			for seq := next; seq <= to; seq++ {
				ev, err := event.NewEvent("", seq, clock.Now(), &event.Report{Category: "facilities",
					Title: fmt.Sprintf("%s #%d", u.id, seq), Building: "B1", Unit: "1-502"})
				if err != nil {
					return err
				}
				evs = append(evs, ev)
			}
			b, err := wire.NewBatch(next, to, evs, false, clock.Now())
			if err != nil {
				return err
			}
			payload, err := wire.Encode(wire.Up{Batch: b})
			if err != nil {
				return err
			}
			u.c.Publish(wire.Topic(u.site, u.id, wire.LeafUp), 1, false, payload)
			next = to + 1
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: acked %d of %d: %w", u.id, u.Acked(), total, ctx.Err())
		case a := <-u.acks:
			u.mu.Lock()
			if a > u.acked {
				u.acked, last = a, time.Now()
			}
			u.mu.Unlock()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Since(last) > time.Second {
			next, last = u.Acked()+1, time.Now() // resend what is not acked
		}
	}
	return nil
}

// Two hub workers on one PostgreSQL and one Mosquitto, one of them a
// process killed with SIGKILL while eight edges stream to the four
// sites: the other owns every site within 10 s, and every event the edges
// sent is stored once and counted once (the device records' received
// counts equal the seqs sent: none taken in twice).
func TestSIGKILLedWorkerEdgesEventsExactlyOnce(t *testing.T) {
	url := database(t)
	broker, _ := testkit.Mosquitto(t)
	p := pool(t, url)
	sites := []string{"s0", "s1", "s2", "s3"}

	w := startWorkerProcess(t, envURL+"="+url, envID+"=hub-k", envSites+"="+strings.Join(sites, ","), envBroker+"="+broker)
	poll.WaitForWithin(t, 20*time.Second, "the worker process to take the 4 sites", func() bool { return leases(t, p, "hub-k") == 4 })

	ctx, cancel := context.WithCancel(context.Background())
	bDone := make(chan error, 1)
	go func() {
		bDone <- runWorker(ctx, url, broker, "hub-b", sites, lease.Options{}, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-bDone; err != nil {
			t.Errorf("hub-b: %v", err)
		}
	})
	poll.WaitForWithin(t, 20*time.Second, "the two workers to hold 2 sites each", func() bool {
		return leases(t, p, "hub-k") == 2 && leases(t, p, "hub-b") == 2
	})

	const total = 300
	var edges []*uplink
	for _, s := range sites {
		for i := range 2 {
			edges = append(edges, startUplink(t, broker, s, fmt.Sprintf("k-%s-%d", s, i)))
		}
	}
	ectx, ecancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ecancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(edges))
	for _, e := range edges {
		wg.Go(func() { errs <- e.run(ectx, total) })
	}
	// Kill mid-stream: every edge has some events acked and more pending.
	poll.WaitForWithin(t, 30*time.Second, "every edge to have events acked", func() bool {
		for _, e := range edges {
			if e.Acked() == 0 {
				return false
			}
		}
		return true
	})
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-w.waited
	poll.WaitForWithin(t, 10*time.Second, "hub-b to own all 4 sites within 10 s", func() bool { return leases(t, p, "hub-b") == 4 })
	t.Logf("hub-b owns every site %v after the SIGKILL", time.Since(killed).Round(10*time.Millisecond))
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	type row struct {
		Device          string
		N, Min, Max     int64
		Acked, Received int64
	}
	rows, err := p.Query(context.Background(), `SELECT e.device, count(*), min(e.seq), max(e.seq), d.acked
		FROM events e JOIN devices d ON d.site = e.site AND d.id = e.device GROUP BY e.device, d.acked ORDER BY e.device`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.Device, &r.N, &r.Min, &r.Max, &r.Acked); err != nil {
			t.Fatal(err)
		}
		n++
		if r.N != total || r.Min != 1 || r.Max != total || r.Acked != total {
			t.Errorf("%s: %d events %d..%d, acked %d; want %d events 1..%d, acked %d", r.Device, r.N, r.Min, r.Max, r.Acked, total, total, total)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(edges) {
		t.Fatalf("events of %d devices stored, want %d", n, len(edges))
	}
	pg, err := pgstore.Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	recs, err := pg.Devices()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Received != total {
			t.Errorf("%s: received %d, want %d (an event taken in twice, or one lost)", r.ID, r.Received, total)
		}
	}
}
