package operators

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
)

func TestParseProxies(t *testing.T) {
	got, err := ParseProxies([]string{"10.1.2.3/8", " 192.0.2.7 ", "fd00::/8", "::ffff:198.51.100.1", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("198.51.100.1/32")}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example", "10.0.0"} {
		if _, err := ParseProxies([]string{bad}); err == nil {
			t.Errorf("%q was taken", bad)
		}
	}
}

func TestClientAddress(t *testing.T) {
	trusted, err := ParseProxies([]string{"10.0.0.0/8", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		realIP     string
		want       string
	}{
		{"no proxy", "203.0.113.5:4000", nil, "", "203.0.113.5"},
		{"forged by an untrusted peer", "203.0.113.5:4000", []string{"198.51.100.9"}, "198.51.100.9", "203.0.113.5"},
		{"trusted proxy", "10.0.0.2:4000", []string{"198.51.100.9"}, "", "198.51.100.9"},
		{"client's own header ignored", "10.0.0.2:4000", []string{"1.1.1.1, 198.51.100.9"}, "", "198.51.100.9"},
		{"two trusted proxies", "10.0.0.2:4000", []string{"1.1.1.1, 198.51.100.9, 10.9.9.9"}, "", "198.51.100.9"},
		{"header on several lines", "10.0.0.2:4000", []string{"1.1.1.1", "198.51.100.9", "10.9.9.9"}, "", "198.51.100.9"},
		{"hop with a port", "10.0.0.2:4000", []string{"198.51.100.9:5050"}, "", "198.51.100.9"},
		{"ipv6 hop", "[fd00::1]:4000", []string{"[2001:db8::7]:5050"}, "", "2001:db8::7"},
		{"garbage right of the client", "10.0.0.2:4000", []string{"198.51.100.9, junk"}, "", "10.0.0.2"},
		{"every hop trusted", "10.0.0.2:4000", []string{"10.3.3.3"}, "", "10.3.3.3"},
		{"x-real-ip", "10.0.0.2:4000", nil, "198.51.100.9", "198.51.100.9"},
		{"x-forwarded-for wins", "10.0.0.2:4000", []string{"198.51.100.9"}, "198.51.100.10", "198.51.100.9"},
		{"bad x-real-ip", "10.0.0.2:4000", nil, "junk", "10.0.0.2"},
		{"mapped ipv4 peer", "[::ffff:10.0.0.2]:4000", []string{"198.51.100.9"}, "", "198.51.100.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest("GET", "/", nil)
			if err != nil {
				t.Fatal(err)
			}
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if tc.realIP != "" {
				r.Header.Set("X-Real-IP", tc.realIP)
			}
			if got := clientOf(r, trusted); got != tc.want {
				t.Errorf("client %q, want %q", got, tc.want)
			}
		})
	}
}

// Two people behind one trusted proxy have a failed-login count each, and
// the audit log names each; the test's own connections come from
// 127.0.0.1, which plays the proxy.
func TestLoginLimitsPerClientBehindTrustedProxy(t *testing.T) {
	forEachStore(t, testLoginLimitsPerClientBehindTrustedProxy)
}

func testLoginLimitsPerClientBehindTrustedProxy(t *testing.T, st storeOpener) {
	f := newFixture(t, st, func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	alice := f.anon(t)
	alice.header = map[string]string{"X-Forwarded-For": "198.51.100.1"}
	bob := f.anon(t)
	bob.header = map[string]string{"X-Forwarded-For": "198.51.100.2"}
	for i := range DefaultLimits.PerClient {
		alice.code("POST", "/api/v1/login", map[string]string{"name": fmt.Sprintf("guess%d", i), "password": "wrong-password"})
	}
	if code := alice.code("POST", "/api/v1/login", map[string]string{"name": "op1", "password": "operator-one-pw"}); code != 429 {
		t.Fatalf("alice after %d failures: %d, want 429", DefaultLimits.PerClient, code)
	}
	if code, out, _ := bob.do("POST", "/api/v1/login", map[string]string{"name": "op1", "password": "operator-one-pw"}); code != 200 {
		t.Fatalf("bob behind the same proxy: %d %s, want 200", code, out)
	}
	es, err := f.svc.AuditLog("op1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	clients := map[int]string{}
	for _, e := range es {
		clients[e.Status] = e.Client
	}
	if clients[429] != "198.51.100.1" || clients[200] != "198.51.100.2" {
		t.Fatalf("audit clients by status: %v, want 429 from 198.51.100.1 and 200 from 198.51.100.2", clients)
	}
}

// Without trusted proxies a forged X-Forwarded-For changes nothing: a
// guesser rotating it is still one address to the limit and the log.
func TestForgedForwardedForIsIgnored(t *testing.T) { forEachStore(t, testForgedForwardedForIsIgnored) }

func testForgedForwardedForIsIgnored(t *testing.T, st storeOpener) {
	f := newFixture(t, st)
	c := f.anon(t)
	c.header = map[string]string{}
	for i := range DefaultLimits.PerClient {
		c.header["X-Forwarded-For"] = fmt.Sprintf("198.51.100.%d", i+1)
		c.header["X-Real-IP"] = fmt.Sprintf("198.51.100.%d", i+1)
		c.code("POST", "/api/v1/login", map[string]string{"name": fmt.Sprintf("guess%d", i), "password": "wrong-password"})
	}
	c.header["X-Forwarded-For"] = "192.0.2.200"
	if code := c.code("POST", "/api/v1/login", map[string]string{"name": "boss", "password": "the-boss-pw-1"}); code != 429 {
		t.Fatalf("after %d failures with forged headers: %d, want 429", DefaultLimits.PerClient, code)
	}
	es, err := f.svc.AuditLog("", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Client != "127.0.0.1" {
			t.Fatalf("entry %d logged client %q, want the peer 127.0.0.1", e.Seq, e.Client)
		}
	}
}
