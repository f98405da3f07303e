package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// DefaultConnectTimeout is how long a new connection may take to complete
// its TLS handshake and send CONNECT.
const DefaultConnectTimeout = 10 * time.Second

// listener is the broker's TCP listener, mending two gaps of mochi's own
// (found reading listeners.TCP and Server.attachClient, v2.7.9):
//
//   - mochi reads a connection's CONNECT without a deadline and sets one
//     from the keepalive only after it: a connection that never sends one
//     (a half-open socket, a stalled TLS handshake, a port scan) kept its
//     goroutine for good, and Server.Close, which waits for every
//     connection's goroutine, never returned — the hub could not stop.
//     Each connection now gets a read deadline for its CONNECT, and Close
//     can end the connections still open (see closeAll).
//   - mochi's accept loop returns on any error, so one EMFILE in a
//     reconnect storm of a building's edges would have closed the broker
//     for good. Accept retries instead, backing off as net/http does,
//     until the listener is closed.
type listener struct {
	net.Listener
	wait time.Duration
	log  *slog.Logger

	mu    sync.Mutex
	conns map[*conn]struct{}
}

func newListener(ln net.Listener, wait time.Duration, log *slog.Logger) *listener {
	return &listener{Listener: ln, wait: wait, log: log, conns: map[*conn]struct{}{}}
}

func (l *listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("mqtt accept failed; retrying", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		// mochi replaces this deadline with the keepalive's once CONNECT
		// is accepted.
		if err := c.SetReadDeadline(time.Now().Add(l.wait)); err != nil {
			l.log.Warn("mqtt connection dropped", "remote", c.RemoteAddr(), "err", err)
			_ = c.Close()
			continue
		}
		tc := &conn{Conn: c, l: l, started: make(chan struct{})}
		l.mu.Lock()
		l.conns[tc] = struct{}{}
		l.mu.Unlock()
		return tc, nil
	}
}

// closeAll closes every connection still open and reports how many.
func (l *listener) closeAll() int {
	l.mu.Lock()
	open := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		open = append(open, c)
	}
	l.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
	return len(open)
}

// quiesce stops accepting and waits, up to timeout, until every
// connection accepted so far has been read from (see conn.Read).
func (l *listener) quiesce(timeout time.Duration) {
	_ = l.Listener.Close() // mochi closes it again later; that error it ignores
	l.mu.Lock()
	open := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		open = append(open, c)
	}
	l.mu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, c := range open {
		select {
		case <-c.started:
		case <-deadline.C:
			l.log.Warn("mqtt connections not yet taken in at the broker's stop", "connections", len(open))
			return
		}
	}
}

// conn leaves the listener's set when it is closed.
type conn struct {
	net.Conn
	l       *listener
	once    sync.Once
	started chan struct{} // closed at the first Read
}

// Read marks the connection's first read. mochi's Server.Close waits on a
// WaitGroup that each connection's goroutine adds to just before that
// read; an Add concurrent with the Wait breaks the WaitGroup's rule (and
// the race detector says so). Broker.Close waits for every accepted
// connection's first read before it calls mochi's Close (quiesce), which
// also orders each Add before the Wait.
func (c *conn) Read(p []byte) (int, error) {
	c.once.Do(func() { close(c.started) })
	return c.Conn.Read(p)
}

func (c *conn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
