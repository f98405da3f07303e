package registry_test

import (
	"testing"

	"linli/hub/registry"
)

// Two registries on one store (two hub workers): a device enrolled or
// revoked through one is known to the other after its Refresh, whose
// change hooks (the Mosquitto files, taking a revoked device off the air)
// run once for each change and not again for the same record.
func TestRefreshSeesAnotherRegistrysChanges(t *testing.T) {
	forEachStore(t, func(t *testing.T, r1 *registry.Registry, reopen func() *registry.Registry) {
		r2 := reopen()
		var changed []string
		r2.OnChange(func(d registry.Device) {
			state := "active"
			if !d.Active() {
				state = "revoked"
			}
			changed = append(changed, d.ID+" "+state)
		})
		k := newKey(t)
		enroll(t, r1, "kiosk-1", false, k)
		if _, ok := r2.Get("kiosk-1"); ok {
			t.Fatal("the other registry knows the device before refreshing")
		}
		refresh := func() {
			t.Helper()
			if err := r2.Refresh(); err != nil {
				t.Fatal(err)
			}
		}
		refresh()
		if pub, known, err := r2.Key("kiosk-1"); err != nil || !known || !pub.Equal(k) {
			t.Fatalf("after refresh: key %x, known %v, %v", pub, known, err)
		}
		refresh() // nothing changed: no hook
		if _, err := r1.Revoke("kiosk-1"); err != nil {
			t.Fatal(err)
		}
		refresh()
		if d, _ := r2.Get("kiosk-1"); d.Active() {
			t.Fatal("the other registry still takes the revoked device as active")
		}
		if want := []string{"kiosk-1 active", "kiosk-1 revoked"}; len(changed) != 2 || changed[0] != want[0] || changed[1] != want[1] {
			t.Fatalf("change hooks ran for %q, want %q", changed, want)
		}
	})
}
