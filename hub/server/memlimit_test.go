package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/shared/config"
	"linli/shared/kv"
	"linli/shared/test/poll"
)

// memory-limit is auto (the profile's limit) unless set, takes a size or
// 0, and a bad value is refused naming the setting.
func TestMemoryLimitSetting(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args, env []string
		want      int64
		bad       bool
	}{
		{"default", nil, nil, kv.Server.MemoryLimit(), false},
		{"small profile", []string{"--profile", "small"}, nil, kv.Small.MemoryLimit(), false},
		{"flag MiB", []string{"--memory-limit", "768MiB"}, nil, 768 << 20, false},
		{"env GiB", nil, []string{"LINLI_MEMORY_LIMIT=2GiB"}, 2 << 30, false},
		{"bytes", []string{"--memory-limit", "104857600"}, nil, 100 << 20, false},
		{"off", []string{"--memory-limit", "0"}, nil, 0, false},
		{"words", []string{"--memory-limit", "lots"}, nil, 0, true},
		{"decimal unit", []string{"--memory-limit", "512MB"}, nil, 0, true},
		{"negative", []string{"--memory-limit", "-1GiB"}, nil, 0, true},
		{"too small", []string{"--memory-limit", "16MiB"}, nil, 0, true},
		{"overflow", []string{"--memory-limit", "99999999999GiB"}, nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := newSet(&c, io.Discard).Load(tc.args, tc.env); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			var ce *config.Error
			if tc.bad {
				if !errors.As(err, &ce) || ce.Setting != "memory-limit" {
					t.Fatalf("error %v, want one naming memory-limit", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.MemoryLimit != tc.want {
				t.Fatalf("memory limit %d, want %d", c.MemoryLimit, tc.want)
			}
		})
	}
}

// The running hub's Go heap has the limit the setting gives, and none when
// it is 0; GOMEMLIMIT, which the runtime read at exec, is left as it is.
func TestMemoryLimitApplied(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	const preset = 300 << 20 // stands for what GOMEMLIMIT set at exec
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want int64
	}{
		{"default", nil, nil, kv.Server.MemoryLimit()},
		{"set", []string{"--memory-limit", "700MiB"}, nil, 700 << 20},
		{"off", []string{"--memory-limit", "0"}, nil, math.MaxInt64},
		{"GOMEMLIMIT wins", []string{"--memory-limit", "700MiB"}, []string{"GOMEMLIMIT=300MiB"}, preset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(preset)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			args := append([]string{"--data", t.TempDir(), "--http", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0"}, tc.args...)
			var out, errs lockedBuffer
			done := make(chan int, 1)
			go func() { done <- Main(ctx, args, tc.env, &out, &errs) }()
			poll.WaitForWithin(t, 30*time.Second, "the hub serves", func() bool {
				select {
				case code := <-done:
					t.Fatalf("hub exited %d before serving: %s", code, errs.String())
				default:
				}
				return strings.Contains(out.String(), "linli-hub serving")
			})
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Errorf("Go heap limit %d while the hub runs, want %d", got, tc.want)
			}
			cancel()
			if code := <-done; code != 0 {
				t.Fatalf("hub exited %d: %s", code, errs.String())
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer Main writes to while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestGCPercentOnPostgres: a hub on PostgreSQL runs its collector at
// GOGC 400 (its live heap lacks the Badger store's arenas); on Badger,
// or with GOGC in the environment, the collector is left as it is.
func TestGCPercentOnPostgres(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	const preset = 150 // stands for what the runtime has (GOGC read at exec)
	for _, tc := range []struct {
		name  string
		store string
		env   []string
		want  int
	}{
		{"badger", "", nil, preset},
		{"postgres", "postgres://linli@127.0.0.1/linli", nil, postgresGCPercent},
		{"GOGC wins", "postgres://linli@127.0.0.1/linli", []string{"GOGC=150"}, preset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(preset)
			if got := applyGCPercent(tc.store, tc.env, slog.New(slog.DiscardHandler)); got != tc.want {
				t.Errorf("applyGCPercent = %d, want %d", got, tc.want)
			}
			if got := debug.SetGCPercent(preset); got != tc.want {
				t.Errorf("GOGC %d in force, want %d", got, tc.want)
			}
		})
	}
}
