package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type door struct {
	Name   string `yaml:"name"`
	Escape bool   `yaml:"escape"`
}

type testConfig struct {
	HTTP  string
	Data  string
	Retry time.Duration
	Batch int
	Debug bool
	Sites []string
	Doors []door
}

func newSet(c *testConfig) *Set {
	s := New("test", io.Discard)
	s.String(&c.HTTP, "http", "127.0.0.1:8080", "listen address")
	s.String(&c.Data, "data", "./data", "data dir")
	s.Duration(&c.Retry, "retry-max", 10*time.Second, "backoff cap")
	s.Int(&c.Batch, "batch-events", 500, "events per batch")
	s.Bool(&c.Debug, "debug", false, "debug logs")
	s.List(&c.Sites, "sites", nil, "sites")
	s.Section("doors", &c.Doors)
	return s
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "http: 127.0.0.1:1\ndata: /file\nretry_max: 3s\nsites: [a, b]\ndoors:\n  - name: B3-main\n    escape: true\n")
	var c testConfig
	s := newSet(&c)
	err := s.Load([]string{"--config", file, "--http", "127.0.0.1:3"},
		[]string{"LINLI_HTTP=127.0.0.1:2", "LINLI_DATA=/env", "LINLI_BATCH_EVENTS=9", "PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	want := testConfig{HTTP: "127.0.0.1:3", Data: "/env", Retry: 3 * time.Second, Batch: 9,
		Sites: []string{"a", "b"}, Doors: []door{{Name: "B3-main", Escape: true}}}
	if c.HTTP != want.HTTP || c.Data != want.Data || c.Retry != want.Retry || c.Batch != want.Batch ||
		strings.Join(c.Sites, ",") != "a,b" || len(c.Doors) != 1 || c.Doors[0] != want.Doors[0] {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

func TestBareBoolFlag(t *testing.T) {
	var c testConfig
	if err := newSet(&c).Load([]string{"--debug"}, nil); err != nil || !c.Debug {
		t.Fatalf("--debug: %v, debug=%v", err, c.Debug)
	}
	c = testConfig{}
	if err := newSet(&c).Load([]string{"--debug=false"}, []string{"LINLI_DEBUG=true"}); err != nil || c.Debug {
		t.Fatalf("--debug=false over env true: %v, debug=%v", err, c.Debug)
	}
}

func TestDefaults(t *testing.T) {
	var c testConfig
	if err := newSet(&c).Load(nil, nil); err != nil {
		t.Fatal(err)
	}
	if c.HTTP != "127.0.0.1:8080" || c.Retry != 10*time.Second || c.Batch != 500 {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	file := writeFile(t, "data: /from-file\n")
	var c testConfig
	if err := newSet(&c).Load(nil, []string{"LINLI_CONFIG=" + file}); err != nil {
		t.Fatal(err)
	}
	if c.Data != "/from-file" {
		t.Fatalf("data = %q", c.Data)
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     []string
		file    string
		setting string
		where   string
	}{
		{"unknown flag", []string{"--nope", "1"}, nil, "", "nope", "flag"},
		{"flag without value", []string{"--data"}, nil, "", "data", "flag"},
		{"bad int flag", []string{"--batch-events", "many"}, nil, "", "batch-events", "flag --batch-events"},
		{"bad env duration", nil, []string{"LINLI_RETRY_MAX=soon"}, "", "retry-max", "env LINLI_RETRY_MAX"},
		{"bad bool in file", nil, nil, "debug: perhaps\n", "debug", ":1"},
		{"unknown key in file", nil, nil, "http: x\nhtpp: y\n", "htpp", ":2"},
		{"typo in section", nil, nil, "doors:\n  - nmae: x\n", "doors", ":1"},
		{"not yaml", nil, nil, "a: [\n", "config", ""},
		{"not a mapping", nil, nil, "- a\n", "config", ":1"},
		{"missing file", []string{"--config", "/nonexistent/x.yaml"}, nil, "", "config", "flag --config"},
		{"stray argument", []string{"extra"}, nil, "", "args", "flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			var c testConfig
			err := newSet(&c).Load(args, tt.env)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load = %v, want *config.Error", err)
			}
			if ce.Setting != tt.setting || !strings.Contains(ce.Where, tt.where) {
				t.Fatalf("error names %q at %q (%v); want %q at %q", ce.Setting, ce.Where, err, tt.setting, tt.where)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var c testConfig
	var out strings.Builder
	s := New("test", &out)
	s.String(&c.HTTP, "http", "x", "listen address")
	if err := s.Load([]string{"-h"}, nil); !errors.Is(err, ErrHelp) {
		t.Fatalf("Load(-h) = %v", err)
	}
	if !strings.Contains(out.String(), "LINLI_HTTP") {
		t.Fatalf("usage lacks env names: %q", out.String())
	}
}

func FuzzConfigFile(f *testing.F) {
	f.Add("http: 127.0.0.1:1\ndoors:\n  - name: B3-main\n    escape: true\n")
	f.Add("retry_max: 3s\nsites: [a, b]\n")
	f.Add("- a\n")
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 1<<16 {
			return
		}
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		var c testConfig
		err := newSet(&c).Load([]string{"--config", p}, nil)
		if err == nil {
			return
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Setting == "" || strings.Contains(err.Error(), "\n") {
			t.Fatalf("config error %q does not name its setting on one line", err)
		}
	})
}

func TestLookupEnv(t *testing.T) {
	env := []string{"GOGC=200", "GOMEMLIMIT=", "LINLI_GOGC=1", "PATH=/bin"}
	for _, tc := range []struct {
		name, want string
		ok         bool
	}{
		{"GOGC", "200", true},
		{"GOMEMLIMIT", "", true}, // set, empty
		{"GOGCX", "", false},
		{"GOG", "", false},
		{"HOME", "", false},
	} {
		if v, ok := LookupEnv(env, tc.name); v != tc.want || ok != tc.ok {
			t.Errorf("LookupEnv(%q) = %q, %v; want %q, %v", tc.name, v, ok, tc.want, tc.ok)
		}
	}
}
