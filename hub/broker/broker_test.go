package broker

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// records are the JSON log lines written to logs so far.
func records(t *testing.T, logs *testkit.SyncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(logs.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// TestConnectionEndsAreLoggedWithTheirDevice: the ordinary end of a
// device's connection is an info line naming the device, a hub stop with
// devices connected logs no warning, and a connection that fails for
// another reason is a warning that says so (mochi gives it no message).
func TestConnectionEndsAreLoggedWithTheirDevice(t *testing.T) {
	logs := &testkit.SyncBuffer{}
	b, err := Start(Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	connect := func(id string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID(id).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		return c
	}
	disconnected := func(id string) bool {
		for _, r := range records(t, logs) {
			if r["msg"] == "mqtt client disconnected" && r["client"] == id && r["level"] == "INFO" {
				return true
			}
		}
		return false
	}

	connect("kiosk-b1").Disconnect(100) // a clean DISCONNECT
	poll.WaitFor(t, "kiosk-b1's disconnect logged", func() bool { return disconnected("kiosk-b1") })

	// A cut connection: the client's socket closes under it.
	raw, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	// CONNECT, MQTT 3.1.1, clean session, keepalive 30 s, client id gw-b3.
	connectPk := []byte{0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x1e, 0x00, 0x05, 'g', 'w', '-', 'b', '3'}
	if _, err := raw.Write(connectPk); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if err := raw.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK %x, %v", ack, err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	poll.WaitFor(t, "gw-b3's cut logged", func() bool { return disconnected("gw-b3") })

	// Not MQTT at all: a failure worth a warning, with a message.
	junk, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := junk.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	poll.WaitFor(t, "the junk connection's warning", func() bool {
		for _, r := range records(t, logs) {
			if r["msg"] == "mqtt connection failed" && r["level"] == "WARN" && r["component"] == "broker" && r["error"] != nil {
				return true
			}
		}
		return false
	})
	junk.Close()

	// A stop with a device connected ends its connection: no warning.
	before := len(records(t, logs))
	connect("kiosk-b2")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	poll.WaitFor(t, "kiosk-b2's disconnect at the stop logged", func() bool { return disconnected("kiosk-b2") })
	for _, r := range records(t, logs)[before:] {
		if r["level"] == "WARN" || r["level"] == "ERROR" || r["msg"] == "" {
			t.Errorf("at the broker's stop: %v", r)
		}
	}
	for _, r := range records(t, logs) {
		if r["msg"] == "" {
			t.Errorf("a log line without a message: %v", r)
		}
	}
}

func TestConnectionEnded(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{errors.New("read connection: EOF"), false}, // text alone proves nothing
		{&net.OpError{Op: "read", Err: net.ErrClosed}, true},
		{errors.Join(errors.New("read connection"), io.EOF), true},
		{packets.ErrKeepAliveTimeout, true},
		{packets.ErrBadUsernameOrPassword, true},
		{packets.ErrProtocolViolationRequireFirstConnect, false},
		{&tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, false},
		{nil, false},
	} {
		if got := connectionEnded(c.err); got != c.want {
			t.Errorf("connectionEnded(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestSilentConnections: a connection that never sends CONNECT is closed
// after the connect timeout, and one still waiting does not hold up Close
// (mochi's Close waited for it for good: the hub could not stop).
func TestSilentConnections(t *testing.T) {
	for _, c := range []struct {
		name    string
		timeout time.Duration
		close   bool // close the broker while the connection is silent
	}{
		{"closed after the connect timeout", 300 * time.Millisecond, false},
		{"broker closes with one waiting", time.Hour, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := Start(Options{Listen: "127.0.0.1:0", ConnectTimeout: c.timeout})
			if err != nil {
				t.Fatal(err)
			}
			silent, err := net.Dial("tcp", b.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			// A byte of a CONNECT's fixed header and no more: mochi is
			// inside its read of the packet.
			if _, err := silent.Write([]byte{0x10}); err != nil {
				t.Fatal(err)
			}
			closed := make(chan error, 1)
			if c.close {
				go func() { closed <- b.Close() }()
				select {
				case err := <-closed:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Close did not return within 10s with a connection that sent no CONNECT")
				}
			} else {
				defer b.Close()
			}
			if err := silent.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if n, err := silent.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("silent connection: read %d, %v; want it closed by the broker", n, err)
			}
		})
	}
}

// flakyListener is a real listener whose first Accept fails as one does
// when the process is out of file descriptors.
type flakyListener struct {
	net.Listener
	failed atomic.Bool
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.failed.CompareAndSwap(false, true) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

// TestAcceptSurvivesErrors: an accept error other than a closed listener
// is retried; mochi's loop would have stopped serving for good.
func TestAcceptSurvivesErrors(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newListener(&flakyListener{Listener: raw}, time.Minute, slog.New(slog.DiscardHandler))
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.Close()
		}
		accepted <- err
	}()
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("Accept after an EMFILE: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted within 10s of an EMFILE")
	}
	if n := ln.closeAll(); n != 0 {
		t.Fatalf("%d connections left open after their Close", n)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}
}

// TestRefusedPublishesDoNotFillTheLog: a client publishing a refused 1 MB
// payload again and again leaves a few lines naming it and the topic, never
// the payload (mochi's own line carried the whole packet, 10 MB of text
// per refusal).
func TestRefusedPublishesDoNotFillTheLog(t *testing.T) {
	logs := &testkit.SyncBuffer{}
	b, err := Start(Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const topic = "linli/v1/s1/kiosk-b2/up" // another device's: refused
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i)
	}
	const rounds = 50
	for i := range rounds {
		// At QoS 1 mochi disconnects an MQTT 3.1.1 client whose publish is
		// refused, and logs the packet: a fresh connection each round.
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("kiosk-x").
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		c.Publish(topic, 1, false, payload)
		poll.WaitFor(t, "the publish refused", func() bool {
			_, pubs, _ := b.Refused()
			return pubs >= uint64(i+1)
		})
		c.Disconnect(0)
	}
	poll.WaitFor(t, "the refusal logged", func() bool {
		return strings.Contains(logs.String(), `"client":"kiosk-x"`) && strings.Contains(logs.String(), topic)
	})
	if n := len(logs.String()); n > 8<<10 {
		t.Fatalf("%d refused 1 MB publishes wrote %d bytes of log, want at most 8 KiB; first 2 KiB:\n%.2048s", rounds, n, logs.String())
	}
	for _, r := range records(t, logs) {
		for k, v := range r {
			if s := fmt.Sprint(v); len(s) > 512 {
				t.Errorf("log attribute %s of %d bytes in %q", k, len(s), r["msg"])
			}
		}
	}
}

// TestLimiter: one line per client and message per logEvery; the next line
// after a quiet spell says how many were held back.
func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter()
	l.now = func() time.Time { return now }
	steps := []struct {
		advance        time.Duration
		client, msg    string
		ok             bool
		wantSuppressed uint64
	}{
		{0, "a", "refused", true, 0},
		{time.Second, "a", "refused", false, 0},
		{time.Second, "a", "refused", false, 0},
		{0, "a", "disconnected", true, 0}, // another message
		{0, "b", "refused", true, 0},      // another client
		{logEvery, "a", "refused", true, 2},
		{0, "a", "refused", false, 0},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		ok, n := l.allow(s.client, s.msg)
		if ok != s.ok || n != s.wantSuppressed {
			t.Errorf("step %d (%s %s): got %v, %d; want %v, %d", i, s.client, s.msg, ok, n, s.ok, s.wantSuppressed)
		}
	}
	// A flood of ids shares one allowance instead of growing the map.
	for i := range 2 * maxLimited {
		l.allow(fmt.Sprintf("id-%d", i), "refused")
	}
	if len(l.lines) > maxLimited+1 {
		t.Errorf("limiter tracks %d keys, want at most %d", len(l.lines), maxLimited+1)
	}
}
