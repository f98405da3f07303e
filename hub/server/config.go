package server

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // site time zones on a machine without the zone database

	"linli/hub/api"
	"linli/hub/operators"
	"linli/hub/pgstore"
	"linli/shared/brokerlist"
	"linli/shared/config"
	"linli/shared/event"
	"linli/shared/kv"
)

// Config is every setting of the hub.
type Config struct {
	Data       string
	Store      string
	HTTP       string
	MQTTListen string
	Broker     string
	Sites      []string
	ID         string
	Lease      string
	District   string
	Username   string
	Password   string
	Profile    string
	LogLevel   string
	LogFormat  string
	Decoders   int
	MaxGroup   int

	AllowUnenrolled bool
	TokenTTL        time.Duration

	Pseudonymize    bool
	MosquittoFiles  bool
	MosquittoDir    string
	MosquittoGroup  string
	MosquittoReload string
	MosquittoBridge bool

	TLS       string
	TLSCert   string
	TLSKey    string
	TLSCA     string
	TLSHosts  []string
	TLSReload time.Duration

	SitePlans []string
	TimeZone  string

	TrustedProxies []string

	BackupDir   string
	BackupEvery time.Duration
	BackupKeep  int

	// Raw events of high-volume kinds are deleted after these (0: kept
	// for ever); facts and decisions are always kept.
	KeepReadings   time.Duration
	KeepAccess     time.Duration
	RetentionEvery time.Duration
	SnapshotEvery  time.Duration
	// MemoryHold is how long a closed report or ended activity stays in
	// the merged state's memory after its last change (0: for ever).
	MemoryHold   time.Duration
	keepReadings string // as set, "90d" or a Go duration
	keepAccess   string
	memoryHold   string

	// MemoryLimit is the Go heap's soft limit in bytes (0: none), from
	// memoryLimit after Validate.
	MemoryLimit int64
	memoryLimit string

	// trimEvery and trimSlack replace storeTrimCheck and storeTrimSlack
	// when set (tests).
	trimEvery time.Duration
	trimSlack int64
}

// Default retentions of raw events: a quarter of readings (trends and
// incident look-backs), a year of door decisions (what residents and the
// police ask about).
const (
	DefaultKeepReadings = 90 * 24 * time.Hour
	DefaultKeepAccess   = 365 * 24 * time.Hour
)

// Version is stamped at build time with -ldflags "-X linli/hub/server.Version=…".
var Version = "dev"

func newSet(c *Config, out io.Writer) *config.Set {
	s := config.New("linli-hub", out)
	s.String(&c.Data, "data", "./data/hub", "data directory")
	s.String(&c.Store, "store", "", "where the hub keeps its state: empty for the Badger store in --data; postgres://USER@HOST:PORT/DB for PostgreSQL (docs/database.md)")
	s.String(&c.HTTP, "http", "127.0.0.1:8080", "HTTP listen address (API and dashboard)")
	s.String(&c.MQTTListen, "mqtt-listen", "127.0.0.1:1883", "embedded MQTT broker listen address")
	s.String(&c.Broker, "broker", "", "external MQTT broker URL (tcp:// or ssl://), or an ordered comma-separated list (an active/standby pair) the hub fails over along as edges do; when set no embedded broker starts")
	s.List(&c.Sites, "sites", nil, "sites this hub owns, comma-separated (default all)")
	s.String(&c.ID, "id", DefaultID, "this hub's id (its MQTT client id on an external broker); with --lease, its worker id, unique among the hubs on the database (default then hub-<host>-<pid>)")
	s.String(&c.Lease, "lease", "auto", "share the sites with the other hubs on the same PostgreSQL store, each site owned by one hub at a time through a lease (docs/deployment.md): auto (on with --store postgres://… and --broker, off with the Badger store or the embedded broker), on, or off")
	s.String(&c.District, "district", "", "with --lease: the name every worker of the district signs as — the hub id edges enrolled with, whose key (<data>/hub.key, copied to every worker) they verify — and, with --mosquitto-files, the workers' login on the broker; the same on every worker (default: --id as given, hub when left out)")
	s.String(&c.Username, "mqtt-username", "", "username on the external broker")
	s.String(&c.Password, "mqtt-password", "", "password on the external broker")
	s.String(&c.Profile, "profile", string(kv.Server), "store memory profile: small or server")
	s.String(&c.memoryLimit, "memory-limit", "auto", "soft limit of the hub's Go heap (debug.SetMemoryLimit): the collector works harder as the heap nears it, so a burst of store compaction does not leave hundreds of MiB of garbage resident; auto is the profile's ("+fmtMiB(kv.Server.MemoryLimit())+" for server, "+fmtMiB(kv.Small.MemoryLimit())+" for small), a size such as 768MiB or 1GiB, or 0 for none; GOMEMLIMIT, when set, wins")
	s.String(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	s.String(&c.LogFormat, "log-format", "text", "log line format: text (key=value) or json (one object a line, for journald, Loki or ELK)")
	s.Int(&c.Decoders, "decoders", 0, "batch decode workers (default: one per core)")
	s.Int(&c.MaxGroup, "max-group", 0, "most events per group commit; 0 is the store's: 20,000 on Badger, 40,000 on PostgreSQL (whose commits cost more each)")
	s.Bool(&c.AllowUnenrolled, "allow-unenrolled", true, "accept devices that never enrolled (unsigned, anonymous) on a loopback broker; enrolled ids always need their credentials and signatures")
	s.Duration(&c.TokenTTL, "token-ttl", 24*time.Hour, "how long an enrollment token stays valid")
	s.Bool(&c.Pseudonymize, "pseudonymize", false, "kiosks enrolled from now on record residents by a keyed hash per site instead of their number")
	s.Bool(&c.MosquittoFiles, "mosquitto-files", false, "with --broker: write Mosquitto password and ACL files for enrolled devices into --mosquitto-dir (configs/mosquitto-secure.conf)")
	s.String(&c.MosquittoDir, "mosquitto-dir", "", "where --mosquitto-files writes passwd and acl (mode 0640), a directory Mosquitto's user can enter, e.g. /var/lib/linli/mosquitto (default <data>/mosquitto, readable only by a Mosquitto running as the hub's user)")
	s.String(&c.MosquittoGroup, "mosquitto-group", "", "group given those files, e.g. mosquitto (default: the directory's, as a setgid directory hands down)")
	s.Bool(&c.MosquittoBridge, "mosquitto-bridge", false, "with --mosquitto-files: the files also carry the login <id>-bridge (every linli/ topic) for a standby broker's bridge to the active one (configs/mosquitto-pair); its password is kept in <data>/mosquitto/bridge.password")
	s.String(&c.MosquittoReload, "mosquitto-reload", "", "command run after those files change, e.g. \"pkill -HUP mosquitto\"")
	s.String(&c.TLS, "tls", "auto", "auto: TLS on every listener off loopback (plain TCP/HTTP only on loopback); on: TLS everywhere")
	s.String(&c.TLSCert, "tls-cert", "", "server certificate (PEM); default: one issued by a site CA the hub creates in <data>/pki")
	s.String(&c.TLSKey, "tls-key", "", "key of --tls-cert (PEM)")
	s.String(&c.TLSCA, "tls-ca", "", "CA that issued --tls-cert, pinned by edges (default: the certificate itself)")
	s.List(&c.TLSHosts, "tls-hosts", nil, "extra DNS names and IPs for the generated server certificate")
	s.Duration(&c.TLSReload, "tls-reload", 5*time.Second, "how often the TLS certificate files are checked for changes (a changed certificate is served from the next handshake; SIGHUP reloads at once)")
	s.List(&c.TrustedProxies, "trusted-proxies", nil, "reverse proxies (CIDR prefixes or addresses, comma-separated) whose X-Forwarded-For or X-Real-IP names the client for login limits and the audit log")
	s.String(&c.BackupDir, "backup-dir", "", "write a backup of the hub into this dir every --backup-every (off when empty)")
	s.Duration(&c.BackupEvery, "backup-every", time.Hour, "how often a scheduled backup is written (1m to 720h)")
	s.Int(&c.BackupKeep, "backup-keep", 48, "how many scheduled backups to keep; older ones are deleted")
	s.String(&c.keepReadings, "keep-readings", "90d", "how long raw sensor readings are kept before they are deleted, in days (90d) or as a duration (36h); 0 keeps them for ever")
	s.String(&c.memoryHold, "memory-hold", "30d", "how long a resolved or rejected report, or an ended activity, stays in the hub's memory after its last change; then the snapshot moves it to the store, from where a later fact or a query reads it (the hub's memory then does not grow with years of history); 0 keeps all in memory")
	s.String(&c.keepAccess, "keep-access", "365d", "how long raw door decisions are kept before they are deleted (forced and held-open doors, which open alarms, are kept for ever); 0 keeps them for ever")
	s.Duration(&c.RetentionEvery, "retention-every", time.Hour, "how often expired raw events are looked for and deleted (1m to 24h)")
	s.Duration(&c.SnapshotEvery, "snapshot-every", 15*time.Minute, "how often the merged state is snapshotted (and at a clean stop), so a start reads the snapshot and the facts after it instead of every fact; 0 turns it off")
	s.List(&c.SitePlans, "site-plans", nil, "site plan files for the dashboard's governance map, comma-separated (configs/site-xiangyang.yaml)")
	s.String(&c.TimeZone, "time-zone", api.DefaultTimeZone, "IANA time zone the dashboard and exports show a site's times in, unless its site plan names one (time_zone)")
	return s
}

// Validate checks settings, naming the first bad one.
func (c *Config) Validate() error {
	if c.Data == "" {
		return config.Errorf("data", "is required")
	}
	if err := checkStore(c.Store); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.HTTP); err != nil {
		return config.Errorf("http", "%q is not host:port", c.HTTP)
	}
	if c.Broker == "" {
		if _, _, err := net.SplitHostPort(c.MQTTListen); err != nil {
			return config.Errorf("mqtt-listen", "%q is not host:port", c.MQTTListen)
		}
		if c.AllowUnenrolled && !isLoopback(c.MQTTListen) {
			// Anonymous devices are a loopback demo convenience only.
			c.AllowUnenrolled = false
		}
	} else {
		if _, err := brokerlist.Parse(c.Broker); err != nil {
			return config.Errorf("broker", "%v", err)
		}
	}
	if c.MosquittoBridge && (c.Broker == "" || !c.MosquittoFiles) {
		// Said, not ignored: a pair started so would have a bridge with
		// no login on the active broker.
		return config.Errorf("mosquitto-bridge", "needs --broker and --mosquitto-files: the bridge's login goes into the files the hub writes")
	}
	for _, s := range c.Sites {
		if err := event.ValidID(s); err != nil {
			return config.Errorf("sites", "%v", err)
		}
	}
	if err := c.checkLease(); err != nil {
		return err
	}
	if err := event.ValidID(c.ID); err != nil {
		return config.Errorf("id", "%v", err)
	}
	if _, err := kv.ParseProfile(c.Profile); err != nil {
		return config.Errorf("profile", "%v", err)
	}
	if c.memoryLimit != "" { // "" when set in code, not by a setting
		lim, err := parseMemoryLimit(c.memoryLimit, kv.Profile(c.Profile))
		if err != nil {
			return config.Errorf("memory-limit", "%v", err)
		}
		c.MemoryLimit = lim
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return config.Errorf("log-level", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return config.Errorf("log-format", "%q is not text or json", c.LogFormat)
	}
	if c.Decoders < 0 || c.Decoders > 64 {
		return config.Errorf("decoders", "must be 0 to 64")
	}
	if c.MaxGroup < 0 {
		return config.Errorf("max-group", "must be 0 (the store's) or more")
	}
	if c.TLS != "auto" && c.TLS != "on" {
		return config.Errorf("tls", "%q is not auto or on (plain TCP/HTTP is only for loopback)", c.TLS)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return config.Errorf("tls-cert", "give both --tls-cert and --tls-key, or neither")
	}
	for _, f := range []struct{ name, path string }{{"tls-cert", c.TLSCert}, {"tls-key", c.TLSKey}, {"tls-ca", c.TLSCA}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return config.Errorf(f.name, "%v", err)
		}
	}
	if _, err := operators.ParseProxies(c.TrustedProxies); err != nil {
		return config.Errorf("trusted-proxies", "%v", err)
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "" {
		return config.Errorf("time-zone", "%q is not an IANA time zone such as Asia/Shanghai", c.TimeZone)
	}
	if c.TLSReload < 100*time.Millisecond {
		return config.Errorf("tls-reload", "must be at least 100ms")
	}
	if c.BackupDir != "" && c.Store != "" {
		return config.Errorf("backup-dir", "the hub keeps its state in PostgreSQL (store), which its own tools back up (pg_dump, pg_basebackup, WAL archiving): leave backup-dir unset")
	}
	if c.BackupDir != "" {
		if info, err := os.Stat(c.BackupDir); err == nil && !info.IsDir() {
			return config.Errorf("backup-dir", "%s is not a directory", c.BackupDir)
		}
		if filepath.Clean(c.BackupDir) == filepath.Join(filepath.Clean(c.Data), "store") {
			return config.Errorf("backup-dir", "must not be the store's own directory")
		}
	}
	if c.BackupEvery < time.Minute || c.BackupEvery > 30*24*time.Hour {
		return config.Errorf("backup-every", "must be 1m to 720h")
	}
	if c.BackupKeep < 1 || c.BackupKeep > 100000 {
		return config.Errorf("backup-keep", "must be 1 to 100000")
	}
	for _, k := range []struct {
		name string
		raw  string
		dst  *time.Duration
	}{{"keep-readings", c.keepReadings, &c.KeepReadings}, {"keep-access", c.keepAccess, &c.KeepAccess},
		{"memory-hold", c.memoryHold, &c.MemoryHold}} {
		if k.raw == "" {
			continue // set in code, not by a setting
		}
		d, err := parseKeep(k.raw)
		if err != nil {
			return config.Errorf(k.name, "%v", err)
		}
		*k.dst = d
	}
	if c.RetentionEvery != 0 && (c.RetentionEvery < time.Minute || c.RetentionEvery > 24*time.Hour) {
		return config.Errorf("retention-every", "must be 1m to 24h")
	}
	if c.SnapshotEvery != 0 && (c.SnapshotEvery < time.Minute || c.SnapshotEvery > 24*time.Hour) {
		return config.Errorf("snapshot-every", "must be 0 (off) or 1m to 24h")
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 30*24*time.Hour {
		return config.Errorf("token-ttl", "must be 1m to 720h")
	}
	return nil
}

// DefaultID is the id setting's default.
const DefaultID = "hub"

// Leased reports whether the hub shares its sites with other hubs
// through site leases (after Validate).
//
// auto turns them on for a hub that can share: on PostgreSQL and an
// external broker. A hub with its embedded broker serves the edges that
// connect to it, which no other hub could take over, so it runs alone.
func (c *Config) Leased() bool {
	return c.Lease == "on" || c.Lease == "auto" && c.Store != "" && c.Broker != ""
}

// checkLease checks the lease setting against the store and the sites,
// and gives a worker whose id was left at the default one of its own:
// two workers with one id would renew each other's leases.
func (c *Config) checkLease() error {
	switch c.Lease {
	case "auto", "on", "off":
	default:
		return config.Errorf("lease", "%q is not auto, on or off", c.Lease)
	}
	if !c.Leased() {
		return nil
	}
	if c.Store == "" {
		return config.Errorf("lease", "on needs --store postgres://…: the leases are kept in PostgreSQL, which all the hubs share")
	}
	if len(c.Sites) > 0 {
		return config.Errorf("sites", "leases decide which sites this hub owns; give --sites only with --lease off")
	}
	if c.District == "" {
		c.District = cmp.Or(c.ID, DefaultID)
	}
	if err := event.ValidID(c.District); err != nil {
		return config.Errorf("district", "%v", err)
	}
	if c.ID == DefaultID || c.ID == "" {
		c.ID = workerID()
	}
	return nil
}

// SignID is the id the hub signs its acks and downlink as, which edges
// enrolled with: the district's with leases (the same on every worker),
// else the hub's own id.
func (c *Config) SignID() string {
	if c.Leased() && c.District != "" {
		return c.District
	}
	return c.ID
}

// workerID is hub-<host>-<pid>, cut to an id's 64 characters, with any
// character an id may not hold in the host name made '-'.
func workerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	b := []byte(host)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			b[i] = '-'
		}
	}
	pid := "-" + strconv.Itoa(os.Getpid())
	id := "hub-" + string(b)
	if len(id)+len(pid) > 64 {
		id = id[:64-len(pid)]
	}
	return id + pid
}

// parseKeep reads a retention: whole days ("90d"), a Go duration
// ("36h"), or 0 for ever. Less than an hour is refused: it is surely a
// unit mistake, and would delete what edges just sent.
func parseKeep(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*366 {
			return 0, fmt.Errorf("%q is not a number of days such as 90d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return 0, fmt.Errorf("%q is not a number of days (90d), a duration (36h) or 0", s)
		}
	}
	if d != 0 && d < time.Hour {
		return 0, fmt.Errorf("%q is less than an hour (0 keeps events for ever)", s)
	}
	return d, nil
}

// checkStore checks the store setting: empty (the Badger store in
// --data) or a PostgreSQL URL, which keeps everything of the hub but its
// key files in the database.
func checkStore(u string) error {
	if u == "" {
		return nil
	}
	if err := pgstore.CheckURL(u); err != nil {
		return config.Errorf("store", "%v", err)
	}
	return nil
}

// isLoopback reports whether a listen address is on loopback, where plain
// TCP and HTTP are allowed (docs/security.md); anything else gets TLS.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// minMemoryLimit is the least --memory-limit taken: under the memtables'
// arenas alone (Badger allocates each whole) the collector would run
// without pause.
const minMemoryLimit = 32 << 20

// parseMemoryLimit reads the memory-limit setting: auto (the profile's),
// 0 for none, or bytes with a binary unit (KiB, MiB, GiB).
func parseMemoryLimit(s string, p kv.Profile) (int64, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "auto":
		return p.MemoryLimit(), nil
	case "0":
		return 0, nil
	}
	num, mul := s, int64(1)
	for _, u := range []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mul = n, u.mul
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mul {
		return 0, fmt.Errorf("%q is not auto, 0 or a size such as 768MiB or 1GiB", s)
	}
	if n == 0 {
		return 0, nil
	}
	if n*mul < minMemoryLimit {
		return 0, fmt.Errorf("%q is under %s: the store's memtables alone would keep the collector running", s, fmtMiB(minMemoryLimit))
	}
	return n * mul, nil
}

// fmtMiB is a byte count as whole MiB, for settings' help.
func fmtMiB(b int64) string { return strconv.FormatInt(b>>20, 10) + "MiB" }

// Group commit sizes by store (--max-group 0). A commit on PostgreSQL
// has fixed costs a Badger commit has not (two transactions and their
// round trips, the statements of every site, a device record per edge,
// an ack per edge): groups twice as large, with edges keeping 64 batches
// in flight instead of 32 (alternated with both at the old defaults),
// took the catch-up from 49.2 to 50.5 % of COPY (medians of 10 pairs)
// and the fan-in from 50.2 to 53.7 % (7 pairs), at a fan-in ack latency
// p50 of 600-770 instead of 530-650 ms.
const (
	maxGroupBadger   = 20_000
	maxGroupPostgres = 40_000
)

// maxGroup is the most events per group commit: the setting, or the
// store's.
func (c Config) maxGroup() int {
	switch {
	case c.MaxGroup > 0:
		return c.MaxGroup
	case c.Store != "":
		return maxGroupPostgres
	}
	return maxGroupBadger
}
