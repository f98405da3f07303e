package agent

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"linli/edge/enroll"
)

// identityWatch keeps what the hub says of this edge's identity: "ok",
// "replaced" (another device enrolled under this id; this one still
// delivers what it numbered) or "revoked". Hints — the broker refusing the
// login, a signed ack of the hub — make it ask the hub, at most every
// askEvery; only the hub's answer over its pinned TLS (or loopback)
// changes the state.
type identityWatch struct {
	ident *atomic.Pointer[enroll.Identity]
	log   *slog.Logger
	// relogin restarts the hub session with a new login.
	relogin func()
	state   atomic.Pointer[string]
	kick    chan struct{}
}

const askEvery = 5 * time.Second

func newIdentityWatch(ident *atomic.Pointer[enroll.Identity], log *slog.Logger) *identityWatch {
	return &identityWatch{ident: ident, log: log, kick: make(chan struct{}, 1)}
}

// State is "" for an edge that is not enrolled, else the hub's last word
// ("ok" until it says otherwise).
func (w *identityWatch) State() string {
	if w.ident.Load() == nil {
		return ""
	}
	if s := w.state.Load(); s != nil {
		return *s
	}
	return "ok"
}

// Retired is the uplink's Hold: a replaced or revoked edge keeps no
// session it has nothing to send on.
func (w *identityWatch) Retired() bool {
	s := w.State()
	return s == "replaced" || s == "revoked"
}

// Hint is the uplink's OnIdentity: it never blocks.
func (w *identityWatch) Hint(state string, err error) {
	if w.ident.Load() == nil {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *identityWatch) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		w.ask(ctx)
		select { // hints meanwhile wait for the next round
		case <-ctx.Done():
			return
		case <-time.After(askEvery):
		}
	}
}

func (w *identityWatch) ask(ctx context.Context) {
	id := w.ident.Load()
	if id == nil {
		return
	}
	answer, err := enroll.Check(ctx, id)
	if err != nil {
		w.log.Warn("cannot ask the hub about this edge's identity", "err", err)
		return
	}
	if answer.MQTTUsername != "" && answer.MQTTUsername != id.MQTTUsername {
		// On Mosquitto a replaced device has a login of its own to
		// deliver what it holds; kept in memory, learnt again after a
		// restart.
		c := *id
		c.MQTTUsername = answer.MQTTUsername
		w.ident.Store(&c)
		w.log.Info("logging in as the replaced device's own broker user", "username", c.MQTTUsername)
		if w.relogin != nil {
			w.relogin()
		}
	}
	state := answer.Identity
	if state == w.State() {
		return
	}
	w.state.Store(&state)
	switch state {
	case "replaced":
		w.log.Warn("identity replaced: another device was enrolled as this one; this edge still sends what it holds, then should be retired", "device", id.ID)
	case "revoked":
		w.log.Error("identity revoked: the hub refuses this edge; nothing it records syncs any more", "device", id.ID)
	default:
		w.log.Info("identity confirmed by the hub", "device", id.ID, "identity", state)
	}
}
