package brokerlist_test

import (
	"slices"
	"strings"
	"testing"

	"linli/shared/brokerlist"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []string
		errPart string
	}{
		{in: "tcp://a:1883", want: []string{"tcp://a:1883"}},
		{in: "tcp://a:1883, ssl://b:8883", want: []string{"tcp://a:1883", "ssl://b:8883"}},
		{in: "mqtt://a:1883,mqtts://b:8883,tls://c:8883", want: []string{"mqtt://a:1883", "mqtts://b:8883", "tls://c:8883"}},
		{in: "", errPart: "no broker"},
		{in: "tcp://a:1883,", errPart: "element 2"},
		{in: "http://a:80", errPart: "scheme"},
		{in: "tcp://a", errPart: "host:port"},
		{in: "tcp://a:1883,b:1883", errPart: "scheme"},
	} {
		got, err := brokerlist.Parse(tt.in)
		if tt.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errPart) {
				t.Errorf("Parse(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.errPart)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
