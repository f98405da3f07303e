package agent

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"linli/edge/uplink"
	"linli/shared/config"
)

// The broker setting is one URL or an ordered comma-separated list, from
// a flag, LINLI_BROKER or the config file (where it may be a YAML list);
// every element is checked, and a bad one is an error naming broker.
func TestBrokerList(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want []string // the brokers in order, or nil for an error
		bad  string   // part of the error message
	}{
		{"default", nil, nil, []string{"tcp://127.0.0.1:1883"}, ""},
		{"one URL", []string{"--broker", "ssl://hub.example:8883"}, nil, []string{"ssl://hub.example:8883"}, ""},
		{"two URLs", []string{"--broker", "tcp://10.0.0.1:1883,tcp://10.0.0.2:1883"}, nil,
			[]string{"tcp://10.0.0.1:1883", "tcp://10.0.0.2:1883"}, ""},
		{"spaces", []string{"--broker", " tcp://a:1883 ,  ssl://b:8883 "}, nil, []string{"tcp://a:1883", "ssl://b:8883"}, ""},
		{"from the environment", nil, []string{"LINLI_BROKER=tcp://a:1883,tcp://b:1883"}, []string{"tcp://a:1883", "tcp://b:1883"}, ""},
		{"a YAML list", []string{"--config", file("list.yaml", "broker:\n  - tcp://a:1883\n  - ssl://b:8883\n")}, nil,
			[]string{"tcp://a:1883", "ssl://b:8883"}, ""},
		{"a comma list in YAML", []string{"--config", file("comma.yaml", "broker: tcp://a:1883,tcp://b:1883\n")}, nil,
			[]string{"tcp://a:1883", "tcp://b:1883"}, ""},
		{"empty element", []string{"--broker", "tcp://a:1883,,tcp://b:1883"}, nil, nil, "element 2"},
		{"trailing comma", []string{"--broker", "tcp://a:1883,"}, nil, nil, "element 2"},
		{"empty", []string{"--broker", ""}, nil, nil, "no broker"},
		{"bad scheme first", []string{"--broker", "http://a:80,tcp://b:1883"}, nil, nil, `"http://a:80"`},
		{"bad scheme second", []string{"--broker", "tcp://a:1883,ftp://b:21"}, nil, nil, `"ftp://b:21"`},
		{"no port", []string{"--broker", "tcp://a:1883,tcp://b"}, nil, nil, "host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			if err := newSet(&cfg, io.Discard).Load(tt.args, tt.env); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if tt.want == nil {
				var ce *config.Error
				if !errors.As(err, &ce) || ce.Setting != "broker" || !strings.Contains(err.Error(), tt.bad) {
					t.Fatalf("err %v, want a broker error containing %s", err, tt.bad)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			got, err := uplink.Brokers(cfg.Broker)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("brokers %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}
