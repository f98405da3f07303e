// Package brokerlist owns the ordered broker list an edge or the hub is
// given (--broker tcp://a:1883,tcp://b:1883): both fail over along it the
// same way, so both read it the same way.
package brokerlist

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Parse splits an ordered, comma-separated broker list and checks each
// URL: tcp:// (or mqtt://) and ssl:// (or tls://, mqtts://) with host:port.
// Spaces around an element are allowed; an empty element is an error, as a
// stray comma more likely hides a lost address than means nothing.
func Parse(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("no broker URL given")
	}
	var out []string
	for i, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, fmt.Errorf("element %d of %q is empty", i+1, list)
		}
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a URL", s)
		}
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts":
		default:
			return nil, fmt.Errorf("%q: scheme must be tcp:// or ssl://", s)
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return nil, fmt.Errorf("%q: want scheme://host:port", s)
		}
		out = append(out, s)
	}
	return out, nil
}
