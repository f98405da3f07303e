package operators

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ParseProxies reads a trusted-proxies list: CIDR prefixes (10.0.0.0/8,
// fd00::/8) or single addresses.
func ParseProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR prefix nor an address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// clientAddr is the address a request comes from, for the login limits
// and the audit log. Behind a reverse proxy every request's peer is the
// proxy, so one client's failed logins would lock out everyone behind
// it; a proxy named in Options.TrustedProxies says who its client is in
// X-Forwarded-For (or X-Real-IP). Headers from any other peer are the
// client's own word and are ignored.
func (s *Service) clientAddr(r *http.Request) string {
	return clientOf(r, s.opts.TrustedProxies)
}

func clientOf(r *http.Request, trusted []netip.Prefix) string {
	peer, ok := parseHop(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	if len(hops) > 0 {
		// Each proxy appends the peer it saw, so the rightmost address
		// that is not a trusted proxy is the client; anything left of it
		// the client may have written itself.
		client := peer
		for i := len(hops) - 1; i >= 0; i-- {
			a, ok := parseHop(hops[i])
			if !ok {
				break // not an address: nothing left of it is believed
			}
			client = a
			if !isTrusted(a, trusted) {
				break
			}
		}
		return client.String()
	}
	if a, ok := parseHop(r.Header.Get("X-Real-IP")); ok {
		return a.String()
	}
	return peer.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads an address as proxies write them: 192.0.2.1,
// 192.0.2.1:5050, 2001:db8::1 or [2001:db8::1]:5050.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
