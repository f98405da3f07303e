package agent

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/edge/enroll"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/identity"
	"linli/shared/wire"
)

// trustWatch takes the site CA a rotation of the hub introduces. It comes
// two ways, each checked by enroll.AddTrust against the CAs the edge
// already trusts: as a trust change of the site's downlink (signed by
// the hub; the replica takes none unsigned), and, for an edge whose TLS
// no longer verifies because it missed the rotation, from the hub's
// bundle URL. Once stored, the session starts again: TLS trusts both CAs
// and the hello tells the hub which.
type trustWatch struct {
	data      string
	ident     *atomic.Pointer[enroll.Identity]
	log       *slog.Logger
	reconnect func()
	refused   prometheus.Counter
	kick      chan struct{}
	now       func() time.Time

	mu         sync.Mutex
	lastRefuse string // the bundle last refused, logged once
}

func newTrustWatch(data string, ident *atomic.Pointer[enroll.Identity], log *slog.Logger) *trustWatch {
	return &trustWatch{data: data, ident: ident, log: log, kick: make(chan struct{}, 1), now: time.Now,
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "linli_edge_trust_refused_total",
			Help: "Site-CA bundles refused: the new CA is not cross-signed by a CA this edge trusts, or could not be stored."})}
}

// changed is the replica's AfterApply: trust changes the hub sent.
func (t *trustWatch) changed(cs []wire.Change) {
	for _, c := range cs {
		if c.Entity != wire.EntityTrust || c.ID != wire.TrustSiteCA || c.Deleted {
			continue
		}
		var tr wire.Trust
		if err := event.UnmarshalOwn(c.Body, &tr); err != nil {
			t.refuse("downlink", "", err)
			continue
		}
		t.take("downlink", tr.CA, tr.Cross)
	}
}

// resume takes the trust change the replica holds: the edge may have
// stopped after applying it and before storing the CA.
func (t *trustWatch) resume(rep *replica.Replica) {
	c, ok, err := rep.Get(wire.EntityTrust, wire.TrustSiteCA)
	if err != nil {
		t.log.Warn("read the hub's trust change", "err", err)
		return
	}
	if ok {
		t.changed([]wire.Change{c})
	}
}

// take stores the new CA when it is cross-signed by a trusted one.
func (t *trustWatch) take(from string, caDER, crossDER []byte) bool {
	id := t.ident.Load()
	if id == nil || id.CAPEM == "" {
		return false // not enrolled, or a plain loopback hub: nothing pinned
	}
	next, added, err := enroll.AddTrust(t.data, id, caDER, crossDER, t.now())
	if err != nil {
		t.refuse(from, identity.Fingerprint(caDER), err)
		return false
	}
	if !added {
		return false
	}
	t.ident.Store(next)
	t.log.Info("new site CA trusted next to the one pinned; reconnecting", "from", from,
		"ca", identity.Fingerprint(caDER), "trusted", len(next.Fingerprints()))
	t.reconnect()
	return true
}

// refuse counts a refused bundle and logs each bundle once: whoever sends
// it may send it again and again.
func (t *trustWatch) refuse(from, fingerprint string, err error) {
	t.refused.Inc()
	key := from + "/" + fingerprint + "/" + err.Error()
	t.mu.Lock()
	seen := t.lastRefuse == key
	t.lastRefuse = key
	t.mu.Unlock()
	if !seen {
		t.log.Error("site-CA bundle refused; still trusting only the CAs held", "from", from, "ca", fingerprint, "err", err)
	}
}

// Untrusted is the uplink's OnUntrusted: it never blocks.
func (t *trustWatch) Untrusted(error) {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// run fetches the hub's bundle when a broker's certificate did not verify,
// at most every askEvery.
func (t *trustWatch) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		}
		if id := t.ident.Load(); id != nil && id.CAPEM != "" {
			ca, cross, err := enroll.FetchTrust(ctx, id)
			if err != nil {
				t.log.Warn("the hub's certificate does not verify and its site-CA bundle is not to be had; re-enroll this edge if the hub's CA was replaced", "err", err)
			} else {
				t.take("bundle", ca, cross)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(askEvery):
		}
	}
}
