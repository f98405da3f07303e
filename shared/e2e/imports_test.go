package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"linli/shared/testkit"
)

// Edge and hub are separate programs that share only the shared/ packages:
// neither may import the other, and shared imports neither.
func TestImportBoundaries(t *testing.T) {
	t.Parallel()
	rules := []struct {
		pkgs      string
		forbidden []string
	}{
		{"./edge/...", []string{"linli/hub"}},
		{"./hub/...", []string{"linli/edge"}},
		{"./firmware/...", []string{"linli/hub", "linli/edge"}},
		{"./shared/...", []string{"linli/hub", "linli/edge"}},
	}
	for _, r := range rules {
		// -test includes the packages' tests: they must keep to the rule too.
		cmd := exec.Command("go", "list", "-test", "-deps", "-f", "{{.ImportPath}}", r.pkgs)
		cmd.Dir = testkit.Root()
		out, err := cmd.CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "matched no packages") {
				continue
			}
			t.Fatalf("go list %s: %v\n%s", r.pkgs, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range r.forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", r.pkgs, dep)
				}
			}
		}
	}
}
