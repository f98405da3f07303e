package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"linli/shared/test/testkit"
)

// goList runs go list in the module root and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = testkit.Root()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// under reports whether the import path pkg is one of prefixes or below one.
func under(pkg string, prefixes ...string) bool {
	for _, p := range prefixes {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

// Edge and hub are separate programs that share only the shared/ packages:
// neither may import the other, and shared imports neither.
func TestImportBoundaries(t *testing.T) {
	t.Parallel()
	rules := []struct {
		pkgs      string
		forbidden []string
		reason    string
	}{
		{"./edge/...", []string{"linli/hub"},
			"an edge runs alone on its own board and talks to the hub only over MQTT; what both need belongs in shared/"},
		{"./hub/...", []string{"linli/edge"},
			"the hub knows edges only by what they send; what both need belongs in shared/"},
		{"./firmware/...", []string{"linli/hub", "linli/edge"},
			"drivers know only the hardware, so a gateway and the simulator can both use them"},
		{"shared", []string{"linli/hub", "linli/edge"},
			"shared/ is what edge and hub have in common; importing either would tie the other to it (shared/test and shared/bench drive both programs and are exempt)"},
		{"./edge/diskguard", []string{"linli/edge/api", "linli/edge/kiosk"},
			"the disk guard sits below the edge API and owns its refusal (ErrDiskReserve), which the API maps to 507"},
		{"./edge/gateway", []string{"linli/edge/kiosk"},
			"a gateway serves its own routes on the edge API (edge/api); the kiosk's UI and resident index are no part of it"},
		{"./edge/kiosk", []string{"linli/edge/gateway"},
			"a kiosk serves its own routes on the edge API (edge/api); doors, cards and sensors are no part of it"},
	}
	for _, r := range rules {
		pkgs := []string{r.pkgs}
		if r.pkgs == "shared" {
			pkgs = sharedCode(t)
		}
		// -test includes the packages' tests: they must keep to the rule too.
		args := append([]string{"-test", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)
		for _, dep := range goList(t, args...) {
			if under(dep, r.forbidden...) {
				t.Errorf("%s depends on %s: %s", r.pkgs, dep, r.reason)
			}
		}
	}
	// The edge API's own code serves both roles and so depends on
	// neither; its tests drive it with the gateway's writes mounted, as
	// the edge program does.
	for _, dep := range goList(t, "-deps", "-f", "{{.ImportPath}}", "./edge/api") {
		if under(dep, "linli/edge/kiosk", "linli/edge/gateway") {
			t.Errorf("./edge/api depends on %s: the roles add their routes to the edge API, not the other way round", dep)
		}
	}
}

// sharedCode lists the packages under shared/ that the programs link or
// could: all but the test helpers and the benchmark harness.
func sharedCode(t *testing.T) []string {
	var out []string
	for _, p := range goList(t, "./shared/...") {
		if !under(p, testHelpers...) && !under(p, measurement...) {
			out = append(out, p)
		}
	}
	return out
}

// What each program links, with -deps and without tests: what a binary
// carries is what runs on the machine it is installed on.
func TestBinaryDependencies(t *testing.T) {
	t.Parallel()
	rules := []struct {
		binary    string
		forbidden []string
		reason    string
	}{
		{"./hub/cmd/linli-hub", []string{"periph.io", "linli/firmware"},
			"the hub runs on a server without GPIO: reader, relay and board drivers belong on gateways; what the hub needs of a card (its canonical form) is in shared/card"},
		{"./hub/cmd/linli-hub", testHelpers,
			"test helpers are not part of a shipped program"},
		{"./edge/cmd/linli-edge", testHelpers,
			"test helpers are not part of a shipped program"},
	}
	for _, r := range rules {
		for _, dep := range goList(t, "-deps", "-f", "{{.ImportPath}}", r.binary) {
			if under(dep, r.forbidden...) {
				t.Errorf("%s links %s: %s", r.binary, dep, r.reason)
			}
		}
	}
}

// testHelpers are the packages that exist for tests only: everything
// under shared/test.
var testHelpers = []string{"linli/shared/test"}

// measurement is the benchmark harness: like a test, it drives the real
// binaries through test helpers (a browser for screen latencies, the FUSE
// layer for slow disks), and it ships in neither linli-hub nor linli-edge
// (TestBinaryDependencies checks the shipped binaries).
var measurement = []string{"linli/shared/bench"}

// No package's own code (its non-test files) imports a test helper; only
// the helpers themselves, the benchmark harness and *_test.go files may.
func TestProductionCodeImportsNoTestHelpers(t *testing.T) {
	t.Parallel()
	const reason = "test helpers start processes, fake clocks and load generators and may change with any test; production code must not depend on them (the benchmark harness may)"
	for _, line := range goList(t, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...") {
		f := strings.Fields(line)
		if len(f) == 0 || under(f[0], testHelpers...) || under(f[0], measurement...) {
			continue
		}
		for _, imp := range f[1:] {
			if under(imp, testHelpers...) {
				t.Errorf("%s imports %s: %s", f[0], imp, reason)
			}
		}
	}
}
