package agent

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"linli/edge/api"
	"linli/edge/diskguard"
	"linli/edge/gateway"
	"linli/edge/kiosk"
	"linli/edge/uplink"
	"linli/shared/config"
	"linli/shared/event"
	"linli/shared/kv"
)

// Config is every setting of an edge.
type Config struct {
	ID       string
	Site     string
	Role     string
	Data     string
	HTTP     string
	Broker   string
	Building string
	Username string
	Password string

	Retention   time.Duration
	BatchEvents int
	BatchBytes  int
	Window      int
	Compress    bool
	KeepAlive   time.Duration
	AckTimeout  time.Duration
	BackoffMax  time.Duration
	Profile     string
	LogLevel    string
	LogFormat   string
	IdleTimeout time.Duration
	GCInterval  time.Duration
	// The site's time zone (kiosks show alarm times in it) and the alarm
	// kinds residents see on kiosks.
	TimeZone       string
	ResidentAlarms string
	// SitePlan is the site plan file a kiosk offers buildings and one-tap
	// report choices from; plan is it as read by Validate.
	SitePlan string
	plan     *kiosk.Plan

	// Following reports up on a kiosk: the code in its report numbers,
	// the hub address its QR codes open, how long a resolved report may be
	// reopened, and the property office's phone number.
	KioskCode    string
	PublicURL    string
	ReopenWindow time.Duration
	OfficePhone  string

	DiskReserve          string // parsed by diskguard.ParseSize
	DiskTelemetryReserve string

	// Gateway is the hardware and rules of a gateway (role gateway).
	Gateway gateway.Config

	// Test-only knobs, set by Main from LINLI_TEST_* variables and by no
	// flag, file key or documented setting (see testKnobs).
	unsafeNoSync        bool
	unsafeNoJournalSync bool
	clockOffset         time.Duration
}

// Version is stamped at build time with -ldflags "-X linli/edge/agent.Version=…".
var Version = "dev"

func newSet(c *Config, out io.Writer) *config.Set {
	s := config.New("linli-edge", out)
	s.String(&c.ID, "id", "kiosk-1", "device id: letters, digits, '-' and '_'")
	s.String(&c.Site, "site", "site-1", "site (residential community) this edge belongs to")
	s.String(&c.Role, "role", api.RoleKiosk, "kiosk or gateway")
	s.String(&c.Data, "data", "", "data directory (default ./data/edge/<id>)")
	s.String(&c.HTTP, "http", "127.0.0.1:8081", "HTTP listen address")
	s.String(&c.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp:// or ssl://), or an ordered comma-separated list to fail over between: each connect tries them in order and keeps the first that answers")
	s.String(&c.Building, "building", "", "building this edge stands in: gateways tag their events with it; a kiosk shows its notices and offers it for reports")
	s.String(&c.Username, "mqtt-username", "", "MQTT username (set by enrollment)")
	s.String(&c.Password, "mqtt-password", "", "MQTT password (set by enrollment)")
	s.Duration(&c.Retention, "retention", 24*time.Hour, "keep acked events this long before deleting them")
	s.Int(&c.BatchEvents, "batch-events", 1000, "most events per uplink batch")
	s.Int(&c.BatchBytes, "batch-bytes", 256<<10, "most bytes per uplink batch")
	s.Int(&c.Window, "window", uplink.DefaultWindow, "uplink batches in flight")
	s.Bool(&c.Compress, "compress", true, "zstd-compress uplink batches")
	s.Duration(&c.KeepAlive, "keepalive", 10*time.Second, "MQTT keepalive")
	s.Duration(&c.AckTimeout, "ack-timeout", 10*time.Second, "resend when the hub's acks stall this long")
	s.Duration(&c.BackoffMax, "backoff-max", 10*time.Second, "longest wait between reconnect attempts")
	s.String(&c.Profile, "profile", string(kv.Small), "store memory profile: small or server")
	s.String(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	s.String(&c.LogFormat, "log-format", "text", "log line format: text (key=value) or json (one object a line, for journald, Loki or ELK)")
	s.Duration(&c.IdleTimeout, "idle-timeout", 60*time.Second, "kiosk UI returns to the start screen after this long idle")
	s.String(&c.TimeZone, "time-zone", "Asia/Shanghai", "the site's time zone (IANA name): kiosks show alarm times in it whatever their own clock's zone")
	s.String(&c.ResidentAlarms, "resident-alarms", "fire,water", "alarm kinds residents see on kiosks, comma-separated: fire (smoke and heat), water, forced, held_open")
	s.String(&c.SitePlan, "site-plan", "", "kiosks: the site plan file (as the hub's --site-plans) whose buildings, units and report choices residents pick from by touch; reports naming another building are refused (empty: the building is typed, unchecked)")
	s.String(&c.KioskCode, "kiosk-code", "", "kiosk: the code report numbers start with, 1 to 8 capital letters and digits, unique in the site (default: from building, else id; B1 gives B1-0001)")
	s.String(&c.PublicURL, "public-url", "", "kiosk: the hub's address as residents' phones reach it; report QR codes open <public-url>/r/<site>/<number> (empty: no QR codes)")
	s.Duration(&c.ReopenWindow, "reopen-window", 14*24*time.Hour, "kiosk: how long after its resolution a resident may reopen a report (\"still not fixed\")")
	s.String(&c.OfficePhone, "office-phone", "", "kiosk: the property office's phone number, shown by the one-touch call button (empty hides it)")
	s.Duration(&c.GCInterval, "gc-interval", time.Minute, "how often acked events past retention are deleted and the value log is garbage-collected")
	s.String(&c.DiskReserve, "disk-reserve", "64MiB", "free space kept back on the data disk: below it writes are refused with 507 (bytes such as 64MiB or a percentage such as 5%)")
	s.String(&c.DiskTelemetryReserve, "disk-telemetry-reserve", "128MiB", "below this much free space the oldest unacked telemetry (readings) is dropped and a gap event records it (bytes or a percentage; at least disk-reserve)")
	c.Gateway.Register(s)
	return s
}

// Validate checks settings, naming the first bad one.
func (c *Config) Validate() error {
	if err := event.ValidID(c.ID); err != nil {
		return config.Errorf("id", "%v", err)
	}
	if err := event.ValidID(c.Site); err != nil {
		return config.Errorf("site", "%v", err)
	}
	if c.ID == "all" || c.ID == "hub" {
		return config.Errorf("id", "%q is reserved", c.ID)
	}
	if c.Role != api.RoleKiosk && c.Role != api.RoleGateway {
		return config.Errorf("role", "%q is not kiosk or gateway", c.Role)
	}
	if c.Building != "" {
		if err := event.ValidID(c.Building); err != nil {
			return config.Errorf("building", "%v", err)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTP); err != nil {
		return config.Errorf("http", "%q is not host:port", c.HTTP)
	}
	if _, err := uplink.Brokers(c.Broker); err != nil {
		return config.Errorf("broker", "%v", err)
	}
	if _, err := kv.ParseProfile(c.Profile); err != nil {
		return config.Errorf("profile", "%v", err)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return config.Errorf("log-level", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return config.Errorf("log-format", "%q is not text or json", c.LogFormat)
	}
	for _, n := range []struct {
		name string
		v    int
		min  int
	}{{"batch-events", c.BatchEvents, 1}, {"batch-bytes", c.BatchBytes, 1024}, {"window", c.Window, 1}} {
		if n.v < n.min {
			return config.Errorf(n.name, "must be at least %d", n.min)
		}
	}
	if c.Window > 1024 {
		return config.Errorf("window", "must be at most 1024")
	}
	reserve, err := diskguard.ParseSize(c.DiskReserve)
	if err != nil {
		return config.Errorf("disk-reserve", "%v", err)
	}
	telem, err := diskguard.ParseSize(c.DiskTelemetryReserve)
	if err != nil {
		return config.Errorf("disk-telemetry-reserve", "%v", err)
	}
	if (reserve.Percent > 0) == (telem.Percent > 0) && telem.Of(100) < reserve.Of(100) {
		return config.Errorf("disk-telemetry-reserve", "%s is below disk-reserve %s", telem, reserve)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"keepalive", c.KeepAlive}, {"ack-timeout", c.AckTimeout}, {"backoff-max", c.BackoffMax}, {"idle-timeout", c.IdleTimeout}, {"gc-interval", c.GCInterval}} {
		if d.v < 100*time.Millisecond {
			return config.Errorf(d.name, "must be at least 100ms")
		}
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "" || c.TimeZone == "Local" {
		return config.Errorf("time-zone", "%q is not an IANA time zone such as Asia/Shanghai", c.TimeZone)
	}
	if c.KioskCode != "" {
		if _, err := kiosk.NewNumbers(nil, c.KioskCode); err != nil {
			return config.Errorf("kiosk-code", "%v", err)
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return config.Errorf("public-url", "%q is not an http:// or https:// address", c.PublicURL)
		}
	}
	if c.ReopenWindow < time.Hour {
		return config.Errorf("reopen-window", "must be at least 1h")
	}
	if len(c.OfficePhone) > 32 || strings.Trim(c.OfficePhone, "0123456789+-() ") != "" {
		return config.Errorf("office-phone", "%q is not a phone number (digits, spaces, + - ( ), at most 32)", c.OfficePhone)
	}
	if _, err := kiosk.ParseAlarmKinds(c.ResidentAlarms); err != nil {
		return config.Errorf("resident-alarms", "%v", err)
	}
	if err := c.Gateway.Validate(c.Role, c.Building); err != nil {
		return err
	}
	return c.loadPlan()
}

// loadPlan reads the kiosk's site plan, which must be of the kiosk's site
// and list the kiosk's own building.
func (c *Config) loadPlan() error {
	c.plan = nil
	if c.SitePlan == "" {
		return nil
	}
	if c.Role != api.RoleKiosk {
		return config.Errorf("site-plan", "only a kiosk reads a site plan; this edge's role is %s", c.Role)
	}
	p, err := kiosk.LoadPlan(c.SitePlan)
	if err != nil {
		return config.Errorf("site-plan", "%v", err)
	}
	if p.Site != c.Site {
		return config.Errorf("site-plan", "%s is the plan of site %s, not of this kiosk's site %s", c.SitePlan, p.Site, c.Site)
	}
	if _, ok := p.Building(c.Building); c.Building != "" && len(p.Buildings) > 0 && !ok {
		return config.Errorf("site-plan", "%s does not list this kiosk's building %s", c.SitePlan, c.Building)
	}
	c.plan = p
	return nil
}

// checkDataDir makes sure dir exists and is writable, so a bad data dir is
// a clear config error and not a Badger failure deep inside.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return config.Errorf("data", "cannot create %s: %v", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return config.Errorf("data", "%s is not writable: %v", dir, err)
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		return config.Errorf("data", "%s: %v", dir, err)
	}
	if err := os.Remove(name); err != nil {
		return config.Errorf("data", "%s: %v", dir, err)
	}
	return nil
}

func defaultData(c *Config) {
	if c.Data == "" {
		c.Data = filepath.Join("data", "edge", c.ID)
	}
}

// testKnobs reads the fault suite's test-only switches from env. They are
// deliberately not settings: no flag, file key, help text or documented setting
// reaches them, and each one only weakens or bends the edge for a test.
//
//	LINLI_TEST_UNSAFE_NO_SYNC=1     Badger SyncWrites and the outbox
//	                                journal's sync off (the power-cut
//	                                test's negative control)
//	LINLI_TEST_UNSAFE_NO_JOURNAL_SYNC=1
//	                                only the outbox journal's sync off (the
//	                                negative control of the journal)
//	LINLI_TEST_CLOCK_OFFSET=-24h    added to the wall clock the outbox's HLC
//	                                and the uplink read (clock chaos)
func testKnobs(c *Config, env []string) error {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "LINLI_TEST_UNSAFE_NO_SYNC":
			c.unsafeNoSync = v == "1"
		case "LINLI_TEST_UNSAFE_NO_JOURNAL_SYNC":
			c.unsafeNoJournalSync = v == "1"
		case "LINLI_TEST_CLOCK_OFFSET":
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s: %v", k, err)
			}
			c.clockOffset = d
		}
	}
	return nil
}
