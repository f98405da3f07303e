package merge_test

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
)

// TestMain raises rapid's default number of cases to 1,000 per property;
// -rapid.checks on the command line still wins.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		if err := flag.Set("rapid.checks", "1000"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

const (
	site = "S1"
	base = int64(1_750_000_000_000) // wall milliseconds of the tests' first fact
)

// tb is what the helpers need of *testing.T, *testing.B and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
	Fatal(args ...any)
}

// at is the HLC ms milliseconds after base.
func at(ms int64) hlc.Timestamp { return hlc.New(base+ms, 0) }

// fact builds the fact of device's seq-th event at ms after base.
func fact(t tb, device string, seq uint64, ms int64, body event.Body) merge.Fact {
	t.Helper()
	ev, err := event.NewEvent(device, seq, at(ms), body)
	if err != nil {
		t.Fatalf("new event: %v", err)
	}
	return merge.Fact{Site: site, Event: ev}
}

// applyAll applies facts in order and fails on any error.
func applyAll(t tb, s *merge.State, facts ...merge.Fact) {
	t.Helper()
	for _, f := range facts {
		if _, err := s.Apply(f); err != nil {
			t.Fatalf("apply %s: %v", f.Event.ID(), err)
		}
	}
}

// build applies facts to a new state.
func build(t tb, facts ...merge.Fact) *merge.State {
	t.Helper()
	s := merge.New()
	applyAll(t, s, facts...)
	return s
}

func encode(t tb, s *merge.State) []byte {
	t.Helper()
	data, err := s.Encode()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return data
}

// reversed is facts in reverse order.
func reversed(facts []merge.Fact) []merge.Fact {
	out := make([]merge.Fact, len(facts))
	for i, f := range facts {
		out[len(facts)-1-i] = f
	}
	return out
}

// sameBothWays applies facts forwards and backwards and requires
// byte-identical states; it returns the forward state.
func sameBothWays(t tb, facts ...merge.Fact) *merge.State {
	t.Helper()
	fwd, back := build(t, facts...), build(t, reversed(facts)...)
	if !bytes.Equal(encode(t, fwd), encode(t, back)) {
		t.Fatal("state depends on the order facts were applied in")
	}
	return fwd
}
