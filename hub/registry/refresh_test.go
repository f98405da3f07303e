package registry_test

import (
	"os"
	"path/filepath"
	"strings"
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

// Registries sharing one store (a district's workers) write the one pair
// of Mosquitto files: written from the store, the files of a registry
// that has not yet read a device another enrolled still give it its
// login and topics, so a reload then does not lock it out.
func TestMosquittoFilesFromTheStoreListWhatAnotherEnrolled(t *testing.T) {
	forEachStore(t, func(t *testing.T, r1 *registry.Registry, reopen func() *registry.Registry) {
		r2 := reopen()
		enroll(t, r1, "kiosk-1", false, newKey(t))
		if _, ok := r2.Get("kiosk-1"); ok {
			t.Fatal("the other registry knows the device before refreshing")
		}
		for _, tc := range []struct {
			fromStore bool
			want      bool
		}{{false, false}, {true, true}} {
			dir := t.TempDir()
			if err := r2.WriteMosquitto(registry.MosquittoFiles{Dir: dir, GID: -1, FromStore: tc.fromStore}, "hub", "pw"); err != nil {
				t.Fatal(err)
			}
			pw, err := os.ReadFile(filepath.Join(dir, registry.MosquittoPasswd))
			if err != nil {
				t.Fatal(err)
			}
			acl, err := os.ReadFile(filepath.Join(dir, registry.MosquittoACL))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(string(pw), "\nkiosk-1:") && strings.Contains(string(acl), "user kiosk-1\n")
			if got != tc.want {
				t.Errorf("FromStore %v: kiosk-1's login and ACL written %v, want %v", tc.fromStore, got, tc.want)
			}
		}
	})
}

// A Refresh that finds many devices enrolled elsewhere calls the batch
// hooks once with all of them (the broker's files rewritten once, not
// once per device); an enrollment calls them with its one device.
func TestRefreshCallsTheBatchHooksOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, r1 *registry.Registry, reopen func() *registry.Registry) {
		r2 := reopen()
		var calls [][]string
		r2.OnChanges(func(ds []registry.Device) {
			var ids []string
			for _, d := range ds {
				ids = append(ids, d.ID)
			}
			calls = append(calls, ids)
		})
		for _, id := range []string{"kiosk-1", "kiosk-2", "kiosk-3"} {
			enroll(t, r1, id, false, newKey(t))
		}
		if err := r2.Refresh(); err != nil {
			t.Fatal(err)
		}
		if len(calls) != 1 || len(calls[0]) != 3 {
			t.Fatalf("batch hooks called with %q, want once with the 3 devices", calls)
		}
		enroll(t, r2, "kiosk-4", false, newKey(t))
		if len(calls) != 2 || len(calls[1]) != 1 || calls[1][0] != "kiosk-4" {
			t.Fatalf("batch hooks called with %q, want kiosk-4's enrollment after the refresh", calls)
		}
	})
}
