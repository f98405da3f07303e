package server

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"linli/shared/config"
)

// trusted-proxies is set like every other setting: flag, LINLI_ variable
// or config key, and a bad entry is refused naming the setting.
func TestTrustedProxiesSetting(t *testing.T) {
	yaml := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(yaml, []byte("trusted_proxies: [10.0.0.0/8, 192.0.2.7]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		args, env []string
		want      []string
		bad       bool
	}{
		{"default", nil, nil, nil, false},
		{"flag", []string{"--trusted-proxies", "10.0.0.0/8,fd00::/8"}, nil, []string{"10.0.0.0/8", "fd00::/8"}, false},
		{"env", nil, []string{"LINLI_TRUSTED_PROXIES=192.0.2.7"}, []string{"192.0.2.7"}, false},
		{"file", []string{"--config", yaml}, nil, []string{"10.0.0.0/8", "192.0.2.7"}, false},
		{"bad", []string{"--trusted-proxies", "10.0.0.0/8,proxy.example"}, nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := newSet(&c, io.Discard).Load(tc.args, tc.env); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			var ce *config.Error
			if tc.bad {
				if !errors.As(err, &ce) || ce.Setting != "trusted-proxies" {
					t.Fatalf("error %v, want one naming trusted-proxies", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.TrustedProxies, tc.want) {
				t.Fatalf("trusted proxies %q, want %q", c.TrustedProxies, tc.want)
			}
		})
	}
}

// time-zone defaults to Asia/Shanghai, is set like any setting and must
// name a zone.
func TestTimeZoneSetting(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args, env []string
		want      string
	}{
		{"default", nil, nil, "Asia/Shanghai"},
		{"flag", []string{"--time-zone", "Asia/Urumqi"}, nil, "Asia/Urumqi"},
		{"env", nil, []string{"LINLI_TIME_ZONE=UTC"}, "UTC"},
		{"bad", []string{"--time-zone", "Beijing"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := newSet(&c, io.Discard).Load(tc.args, tc.env); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			var ce *config.Error
			if tc.want == "" {
				if !errors.As(err, &ce) || ce.Setting != "time-zone" {
					t.Fatalf("error %v, want one naming time-zone", err)
				}
				return
			}
			if err != nil || c.TimeZone != tc.want {
				t.Fatalf("zone %q (%v), want %q", c.TimeZone, err, tc.want)
			}
		})
	}
}

// store is set like any setting (flag, LINLI_STORE, config key store).
// Empty keeps the Badger store in --data, a PostgreSQL URL is taken; a
// URL that is not PostgreSQL's is refused naming the setting, in one line
// without its password. With store set, backup-dir is refused naming it:
// PostgreSQL's own tools back the database up.
func TestStoreSetting(t *testing.T) {
	yaml := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(yaml, []byte("store: postgres://linli:secret@db.example:5432/linli\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		args, env []string
		want      string // in the error; "" for none
	}{
		{"default", nil, nil, ""},
		{"flag", []string{"--store", "postgres://linli@127.0.0.1:5432/linli"}, nil, ""},
		{"env", nil, []string{"LINLI_STORE=postgres://linli@127.0.0.1:5432/linli"}, ""},
		{"file", []string{"--config", yaml}, nil, ""},
		{"bad scheme", []string{"--store", "mysql://linli:secret@127.0.0.1/linli"}, nil, "want postgres://"},
		{"path", []string{"--store", "/var/lib/linli"}, nil, "want postgres://"},
		{"no database", []string{"--store", "postgres://linli@127.0.0.1:5432"}, nil, "database"},
		{"backups", []string{"--store", "postgres://linli:secret@127.0.0.1:5432/linli", "--backup-dir", "/var/backups/linli"}, nil, "pg_basebackup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := newSet(&c, io.Discard).Load(tc.args, tc.env); err != nil {
				t.Fatal(err)
			}
			c.Data, c.HTTP, c.MQTTListen = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			setting := "store"
			if tc.name == "backups" {
				setting = "backup-dir"
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Setting != setting {
				t.Fatalf("error %v, want one naming %s", err, setting)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "secret") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line with %q and no password", msg, tc.want)
			}
		})
	}
}

// keep-readings and keep-access take days, a Go duration or 0 (for
// ever), by flag, LINLI_ variable or config key; anything else is refused
// naming the setting.
func TestKeepSettings(t *testing.T) {
	yaml := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(yaml, []byte("keep_readings: 30d\nkeep_access: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	for _, tc := range []struct {
		name             string
		args, env        []string
		readings, access time.Duration
		bad              string
	}{
		{"defaults", nil, nil, 90 * day, 365 * day, ""},
		{"flags", []string{"--keep-readings", "7d", "--keep-access", "36h"}, nil, 7 * day, 36 * time.Hour, ""},
		{"env", nil, []string{"LINLI_KEEP_READINGS=0", "LINLI_KEEP_ACCESS=730d"}, 0, 730 * day, ""},
		{"file", []string{"--config", yaml}, nil, 30 * day, 0, ""},
		{"not a number", []string{"--keep-readings", "ninety days"}, nil, 0, 0, "keep-readings"},
		{"negative", []string{"--keep-access", "-5d"}, nil, 0, 0, "keep-access"},
		{"minutes", []string{"--keep-access", "5m"}, nil, 0, 0, "keep-access"},
		{"every", []string{"--retention-every", "1s"}, nil, 0, 0, "retention-every"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}
			if err := newSet(&c, io.Discard).Load(tc.args, tc.env); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tc.bad != "" {
				var ce *config.Error
				if !errors.As(err, &ce) || ce.Setting != tc.bad {
					t.Fatalf("error %v, want one naming %s", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.KeepReadings != tc.readings || c.KeepAccess != tc.access {
				t.Fatalf("keep readings %v, access %v; want %v, %v", c.KeepReadings, c.KeepAccess, tc.readings, tc.access)
			}
		})
	}
}

// broker takes one URL or an ordered list (an active/standby pair), read
// as the edges read theirs; a bad element is refused naming the setting.
func TestBrokerSetting(t *testing.T) {
	for _, tc := range []struct {
		broker string
		bad    bool
	}{
		{"tcp://a:1883", false},
		{"tcp://a:1883,tcp://b:1883", false},
		{"ssl://a:8883, ssl://b:8883", false},
		{"tcp://a:1883,", true},
		{"tcp://a:1883,b:1883", true},
		{"http://a:1883", true},
	} {
		t.Run(tc.broker, func(t *testing.T) {
			var c Config
			if err := newSet(&c, io.Discard).Load([]string{"--broker", tc.broker}, nil); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			var ce *config.Error
			switch {
			case tc.bad && (!errors.As(err, &ce) || ce.Setting != "broker"):
				t.Fatalf("error %v, want one naming broker", err)
			case !tc.bad && err != nil:
				t.Fatal(err)
			}
		})
	}
}

// mosquitto-bridge only adds a login to the files the hub writes: without
// them it is refused, naming the setting.
func TestMosquittoBridgeSetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		bad  bool
	}{
		{[]string{"--broker", "tcp://a:1883,tcp://b:1883", "--mosquitto-files", "--mosquitto-bridge"}, false},
		{[]string{"--broker", "tcp://a:1883,tcp://b:1883", "--mosquitto-bridge"}, true},
		{[]string{"--mosquitto-bridge"}, true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var c Config
			if err := newSet(&c, io.Discard).Load(tc.args, nil); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			var ce *config.Error
			switch {
			case tc.bad && (!errors.As(err, &ce) || ce.Setting != "mosquitto-bridge"):
				t.Fatalf("error %v, want one naming mosquitto-bridge", err)
			case !tc.bad && err != nil:
				t.Fatal(err)
			}
		})
	}
}

// lease is on by default with a PostgreSQL store and an external broker,
// off with Badger or the embedded broker; on
// without PostgreSQL, a bad value, or fixed sites beside leases are
// refused naming the setting; a leased worker left at the default id gets
// one of its own. (The PostgreSQL store itself is still refused at start
// by the store check, so the cases with a URL check checkLease alone.)
func TestLeaseSetting(t *testing.T) {
	const pg, mq = "postgres://linli@127.0.0.1:5432/linli", "tcp://127.0.0.1:1883"
	for _, tc := range []struct {
		name   string
		c      Config
		leased bool
		bad    string // the setting named, or ""
		ownID  bool   // the id is made for this worker
	}{
		{"badger default", Config{Lease: "auto", ID: DefaultID}, false, "", false},
		{"postgres default", Config{Lease: "auto", Store: pg, Broker: mq, ID: DefaultID}, true, "", true},
		{"postgres with an id", Config{Lease: "auto", Store: pg, Broker: mq, ID: "hub-2"}, true, "", false},
		{"postgres, embedded broker", Config{Lease: "auto", Store: pg, ID: DefaultID}, false, "", false},
		{"postgres, embedded broker, on", Config{Lease: "on", Store: pg, ID: DefaultID}, true, "", true},
		{"postgres, off", Config{Lease: "off", Store: pg, ID: DefaultID}, false, "", false},
		{"on without postgres", Config{Lease: "on", ID: DefaultID}, false, "lease", false},
		{"not a choice", Config{Lease: "yes", Store: pg, ID: DefaultID}, false, "lease", false},
		{"fixed sites beside leases", Config{Lease: "on", Store: pg, ID: "hub-2", Sites: []string{"s1"}}, false, "sites", false},
		{"fixed sites, off", Config{Lease: "off", Store: pg, ID: DefaultID, Sites: []string{"s1"}}, false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			err := c.checkLease()
			if tc.bad != "" {
				var ce *config.Error
				if !errors.As(err, &ce) || ce.Setting != tc.bad {
					t.Fatalf("error %v, want one naming %s", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Leased() != tc.leased {
				t.Fatalf("leased %v, want %v", c.Leased(), tc.leased)
			}
			if got := c.ID != tc.c.ID; got != tc.ownID {
				t.Fatalf("id %q (was %q): made for this worker %v, want %v", c.ID, tc.c.ID, got, tc.ownID)
			}
			if tc.ownID && (!strings.HasPrefix(c.ID, "hub-") || len(c.ID) > 64) {
				t.Fatalf("worker id %q, want hub-<host>-<pid> within 64 characters", c.ID)
			}
		})
	}

	// Through the flags: the default and a refusal.
	var c Config
	if err := newSet(&c, io.Discard).Load([]string{"--lease", "on"}, nil); err != nil {
		t.Fatal(err)
	}
	var ce *config.Error
	if err := c.Validate(); !errors.As(err, &ce) || ce.Setting != "lease" {
		t.Fatalf("--lease on with the Badger store: %v, want an error naming lease", err)
	}
	c = Config{}
	if err := newSet(&c, io.Discard).Load(nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.Leased() || c.ID != DefaultID {
		t.Fatalf("defaults: err %v, leased %v, id %q; want no leases and id %q", err, c.Leased(), c.ID, DefaultID)
	}
}

// memory-hold takes days, a Go duration or 0 (everything stays in
// memory), like the retentions; a bad one is refused naming it.
func TestMemoryHoldSetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
		bad  bool
	}{
		{nil, 30 * 24 * time.Hour, false},
		{[]string{"--memory-hold", "7d"}, 7 * 24 * time.Hour, false},
		{[]string{"--memory-hold", "0"}, 0, false},
		{[]string{"--memory-hold", "5m"}, 0, true},
		{[]string{"--memory-hold", "a month"}, 0, true},
	} {
		c := Config{}
		if err := newSet(&c, io.Discard).Load(tc.args, nil); err != nil {
			t.Fatal(err)
		}
		err := c.Validate()
		var ce *config.Error
		switch {
		case tc.bad && (!errors.As(err, &ce) || ce.Setting != "memory-hold"):
			t.Errorf("%v: error %v, want one naming memory-hold", tc.args, err)
		case !tc.bad && (err != nil || c.MemoryHold != tc.want):
			t.Errorf("%v: hold %v (%v), want %v", tc.args, c.MemoryHold, err, tc.want)
		}
	}
}

// A worker signs as its district: the --district given, else the --id as
// given (hub when left out), never the id made for the worker; a hub
// without leases signs as its id; a bad district is refused naming it.
func TestDistrictSignID(t *testing.T) {
	const pg, mq = "postgres://linli@127.0.0.1:5432/linli", "tcp://127.0.0.1:1883"
	for _, tc := range []struct {
		name string
		c    Config
		want string
		bad  bool
	}{
		{"a lone hub", Config{Lease: "auto", ID: "hub-9"}, "hub-9", false},
		{"a worker left at the default id", Config{Lease: "auto", Store: pg, Broker: mq, ID: DefaultID}, DefaultID, false},
		{"a worker with an id", Config{Lease: "auto", Store: pg, Broker: mq, ID: "w1"}, "w1", false},
		{"a worker of a district", Config{Lease: "on", Store: pg, ID: "w1", District: "d1"}, "d1", false},
		{"a bad district", Config{Lease: "on", Store: pg, ID: "w1", District: "d/1"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			err := c.checkLease()
			var ce *config.Error
			if tc.bad {
				if !errors.As(err, &ce) || ce.Setting != "district" {
					t.Fatalf("error %v, want one naming district", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.SignID(); got != tc.want {
				t.Fatalf("signs as %q, want %q (id %q)", got, tc.want, c.ID)
			}
		})
	}
}

// A group commit holds the store's number of events unless max-group says
// otherwise: 20,000 on Badger, 40,000 on PostgreSQL. A negative one is
// refused naming the setting.
func TestMaxGroupSetting(t *testing.T) {
	const pg = "postgres://linli@127.0.0.1:5432/linli"
	for _, tc := range []struct {
		name      string
		args, env []string
		want      int // 0: refused
	}{
		{"Badger's", nil, nil, 20_000},
		{"PostgreSQL's", []string{"--store", pg}, nil, 40_000},
		{"flag", []string{"--store", pg, "--max-group", "5000"}, nil, 5000},
		{"env", nil, []string{"LINLI_MAX_GROUP=8000"}, 8000},
		{"negative", []string{"--max-group", "-1"}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := newSet(&c, io.Discard).Load(tc.args, tc.env); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tc.want == 0 {
				var ce *config.Error
				if !errors.As(err, &ce) || ce.Setting != "max-group" {
					t.Fatalf("error %v, want one naming max-group", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.maxGroup(); got != tc.want {
				t.Fatalf("max group %d, want %d", got, tc.want)
			}
		})
	}
}
