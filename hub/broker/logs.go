package broker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// What a client can make the hub log is bounded: a client that repeats a
// refused publish (or connect, or subscribe) in a loop must not turn the
// hub's log into a channel that fills its disk.
const (
	// maxAttrBytes bounds the text of one attribute of a broker line.
	maxAttrBytes = 256
	// logEvery is the most often one client gets the same line.
	logEvery = 10 * time.Second
	// maxLimited bounds the clients the limiter tracks; beyond it every
	// other client shares one allowance.
	maxLimited = 4096
)

// limiter lets through one line per client and message every logEvery and
// counts what it held back, for the next line to say.
type limiter struct {
	now func() time.Time

	mu    sync.Mutex
	lines map[limitKey]*limitState
	swept time.Time
}

type limitKey struct{ client, msg string }

type limitState struct {
	last       time.Time
	suppressed uint64
}

func newLimiter() *limiter {
	return &limiter{now: time.Now, lines: map[limitKey]*limitState{}}
}

// allow reports whether a line msg about client may be written now, and
// how many such lines were held back since the last one written.
func (l *limiter) allow(client, msg string) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := limitKey{client, msg}
	st := l.lines[k]
	if st == nil {
		if len(l.lines) >= maxLimited && now.Sub(l.swept) >= logEvery {
			l.swept = now
			for k, s := range l.lines {
				if now.Sub(s.last) >= logEvery {
					delete(l.lines, k)
				}
			}
		}
		if len(l.lines) >= maxLimited {
			k.client = "*" // a flood of ids: they share one line
			st = l.lines[k]
		}
		if st == nil {
			l.lines[k] = &limitState{last: now}
			return true, 0
		}
	}
	if now.Sub(st.last) < logEvery {
		st.suppressed++
		return false, 0
	}
	suppressed, st.suppressed, st.last = st.suppressed, 0, now
	return true, suppressed
}

// logLimited writes a warning about client through lim.
func logLimited(log *slog.Logger, lim *limiter, level slog.Level, client, msg string, args ...any) {
	ok, n := lim.allow(client, msg)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(context.Background(), level, msg, append([]any{"client", client}, args...)...)
}

// boundAttr rewrites one attribute of a mochi line so that it says what
// happened in a bounded number of bytes: a packet becomes its type, topic
// and payload size (mochi logs the whole packet, payload included), and
// any other value longer than maxAttrBytes is cut.
func boundAttr(a slog.Attr) []slog.Attr {
	switch v := a.Value.Any().(type) {
	case packets.Packet:
		return []slog.Attr{
			slog.String("packet", packets.PacketNames[v.FixedHeader.Type]),
			slog.String("topic", truncate(v.TopicName)),
			slog.Int("payload_bytes", len(v.Payload)),
		}
	case []byte:
		return []slog.Attr{slog.Int(a.Key+"_bytes", len(v))}
	case string:
		return []slog.Attr{slog.String(a.Key, truncate(v))}
	case error:
		return []slog.Attr{slog.String(a.Key, truncate(v.Error()))}
	}
	switch a.Value.Kind() {
	case slog.KindAny, slog.KindGroup, slog.KindLogValuer:
		return []slog.Attr{slog.String(a.Key, truncate(fmt.Sprint(a.Value.Any())))}
	}
	return []slog.Attr{a}
}

func truncate(s string) string {
	if len(s) <= maxAttrBytes {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:maxAttrBytes], len(s))
}
