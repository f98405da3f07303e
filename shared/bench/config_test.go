package bench

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"linli/shared/config"
)

// The fleet's hubs: one on Badger, or a district's workers on one
// PostgreSQL; several hubs each on a Badger of its own would share no
// sites, so that is refused, naming the setting.
func TestFleetSettings(t *testing.T) {
	bin := t.TempDir()
	for _, b := range []string{"linli-hub", "linli-edge"} {
		if err := os.WriteFile(filepath.Join(bin, b), nil, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		hubs    int
		store   string
		setting string // "" when valid
	}{
		{1, "", ""},
		{3, FleetStorePG, ""},
		{1, FleetStorePG, ""},
		{3, "postgres://linli:secret@db1:5432/linli", ""},
		{3, "", "fleet-hubs"},
		{0, "", "fleet-hubs"},
		{3, "mysql://db1/linli", "fleet-store"},
		{1, "/var/lib/linli", "fleet-store"},
	}
	for _, tt := range tests {
		c := Config{Bin: bin, StartupSizes: []int{1, 2}, Pairs: 1, FleetHubs: tt.hubs, FleetStore: tt.store}
		err := c.Validate()
		var ce *config.Error
		switch {
		case tt.setting == "" && err != nil:
			t.Errorf("%d hubs on %q: %v", tt.hubs, tt.store, err)
		case tt.setting != "" && (!errors.As(err, &ce) || ce.Setting != tt.setting):
			t.Errorf("%d hubs on %q: got %v, want an error naming --%s", tt.hubs, tt.store, err, tt.setting)
		}
	}
}
