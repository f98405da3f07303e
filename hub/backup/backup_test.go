package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/hub/store"
	"linli/shared/kv"
	"linli/shared/test/poll"
)

var quiet = slog.New(slog.DiscardHandler)

// hubData makes a hub data dir: a store with n keys and the files a hub
// keeps beside it, plus what a backup must leave out.
func hubData(t *testing.T, n int) (string, *store.Store) {
	t.Helper()
	data := t.TempDir()
	for name, body := range map[string]string{
		"admin.token":            "0123456789abcdef0123456789abcdef\n",
		"hub.key":                "signing key",
		"pki/ca.pem":             "ca",
		"pki/ca.key":             "ca key",
		"mosquitto/hub.password": "pw",
		".admin.token.123":       "an atomic write's temporary",
		"admin.token.tmp":        "a temporary",
	} {
		p := filepath.Join(data, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Open(filepath.Join(data, "store"), kv.Small, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Upgrade(nil); err != nil {
		t.Fatal(err)
	}
	wb := s.DB().NewWriteBatch()
	for i := range n {
		if err := wb.Set(kv.Key("e/s1/k1/", kv.U64(uint64(i))), fmt.Appendf(nil, "event %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	return data, s
}

func source(data string, s *store.Store) Source {
	return Source{Store: s, Data: data, Skip: []string{filepath.Join(data, "store")}, Hub: "hub", Linli: "test", Spool: os.TempDir(),
		Now: func() time.Time { return time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC) }}
}

func archive(t *testing.T, src Source) []byte {
	t.Helper()
	a, err := Take(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var buf bytes.Buffer
	if n, err := a.WriteTo(&buf); err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: %d of %d, %v", n, buf.Len(), err)
	}
	return buf.Bytes()
}

func dump(t *testing.T, db *badger.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key())] = string(v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// A backup restored into a new dir gives back every key of the store and
// every file of the data dir with its mode, and nothing a backup leaves
// out; the store records the restore.
func TestBackupRestoreRoundTrip(t *testing.T) {
	data, s := hubData(t, 3000)
	raw := archive(t, source(data, s))

	m, entries, err := verifyBytes(t, raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != Format || m.Hub != "hub" || m.StoreVersion != 1 || entries != 3001 { // 3000 events and the version
		t.Fatalf("manifest %+v, %d entries", m, entries)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(bytes.NewReader(raw), "/backups/b.tar", dir, RestoreOptions{Supported: 1, Profile: kv.Small}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"admin.token", "hub.key", "pki/ca.pem", "pki/ca.key", "mosquitto/hub.password"} {
		want, _ := os.ReadFile(filepath.Join(data, name))
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %q %v, want %q", name, got, err, want)
		}
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v %v, want 0600", name, info.Mode(), err)
		}
	}
	for _, name := range []string{".admin.token.123", "admin.token.tmp"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s restored (%v); temporaries stay out", name, err)
		}
	}
	r, err := store.Open(filepath.Join(dir, "store"), kv.Small, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want, got := dump(t, s.DB()), dump(t, r.DB())
	delete(got, "meta/restore")
	delete(got, "meta/backups") // the restore starts the backup horizon
	if len(got) != len(want) {
		t.Fatalf("restored %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %q: %q, want %q", k, got[k], v)
		}
	}
	if rec, err := r.LastRestore(); err != nil || rec.From != "b.tar" || !rec.BackupCreated.Equal(m.Created) {
		t.Fatalf("restore record %+v %v", rec, err)
	}
}

func verifyBytes(t *testing.T, raw []byte) (Manifest, int, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "b.tar")
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return Verify(p)
}

// rewrite copies an archive member by member through edit, which may
// change a body (same length) or drop a member by returning nil.
func rewrite(t *testing.T, raw []byte, edit func(name string, body []byte) []byte) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(raw))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if body = edit(hdr.Name, body); body == nil {
			continue
		}
		hdr.Size = int64(len(body))
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// renameMember renames a member in the tar and in the manifest alike.
func renameMember(t *testing.T, raw []byte, from, to string) []byte {
	t.Helper()
	raw = rewrite(t, raw, editManifest(func(m *Manifest) {
		for i := range m.Members {
			if m.Members[i].Name == from {
				m.Members[i].Name = to
			}
		}
	}))
	tr := tar.NewReader(bytes.NewReader(raw))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == from {
			hdr.Name = to
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func flipLast(body []byte) []byte { b := bytes.Clone(body); b[len(b)-1] ^= 0xff; return b }

func editManifest(f func(*Manifest)) func(string, []byte) []byte {
	return func(name string, body []byte) []byte {
		if name != ManifestName {
			return body
		}
		var m Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			panic(err)
		}
		f(&m)
		b, _ := json.Marshal(m)
		return b
	}
}

// A damaged or foreign archive is refused with an error that says what
// is wrong, and the data dir is neither created nor left half-restored.
func TestRestoreRefusesBadArchives(t *testing.T) {
	data, s := hubData(t, 200)
	raw := archive(t, source(data, s))
	keep := func(_ string, b []byte) []byte { return b }
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"empty file", nil, "no manifest"},
		{"not a tar", []byte(strings.Repeat("hello", 300)), "no manifest"},
		{"truncated", raw[:len(raw)*2/3], "truncated"},
		{"store stream damaged", rewrite(t, raw, func(n string, b []byte) []byte {
			if n == StoreName {
				return flipLast(b)
			}
			return b
		}), ""},
		{"file changed", rewrite(t, raw, func(n string, b []byte) []byte {
			if n == "files/hub.key" {
				return flipLast(b)
			}
			return b
		}), "member files/hub.key: SHA-256"},
		{"member missing", rewrite(t, raw, func(n string, b []byte) []byte {
			if n == "files/pki/ca.key" {
				return nil
			}
			return b
		}), "member files/pki/ca.key is missing"},
		{"manifest not first", rewrite(t, rewrite(t, raw, func(n string, b []byte) []byte {
			if n == ManifestName {
				return nil
			}
			return b
		}), keep), "the first member is"},
		{"newer format", rewrite(t, raw, editManifest(func(m *Manifest) { m.Format = 2 })), "archive format 2"},
		{"newer store", rewrite(t, raw, editManifest(func(m *Manifest) { m.StoreVersion = 9 })),
			"store version 9 is newer than this linli-hub supports (1): upgrade linli-hub"},
		{"path outside the data dir", renameMember(t, raw, "files/admin.token", "files/../../etc/x"), `member "files/../../etc/x" is neither`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "hub")
			_, err := Restore(bytes.NewReader(tc.archive), "x.tar", dir, RestoreOptions{Supported: 1, Profile: kv.Small})
			if err == nil {
				t.Fatal("restored a bad archive")
			}
			var tn *store.TooNewError
			if !errors.Is(err, ErrBadArchive) && !errors.As(err, &tn) {
				t.Errorf("error %v is neither a bad archive nor a too new store", err)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line with %q", err, tc.want)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// A data dir with anything in it is refused; an empty one is used.
func TestRestoreOnlyIntoAnEmptyDir(t *testing.T) {
	data, s := hubData(t, 10)
	raw := archive(t, source(data, s))
	if _, err := Restore(bytes.NewReader(raw), "x.tar", data, RestoreOptions{Supported: 1, Profile: kv.Small}); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a hub's data dir: %v, want ErrNotEmpty", err)
	}
	empty := t.TempDir()
	if _, err := Restore(bytes.NewReader(raw), "x.tar", empty, RestoreOptions{Supported: 1, Profile: kv.Small}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(empty, "store")); err != nil {
		t.Fatal(err)
	}
}

// Scheduled backups: each written whole under its own name, checked,
// the oldest pruned beyond keep; the first is due right away and the next
// one every interval after the newest on disk.
func TestSchedulerWritesChecksAndPrunes(t *testing.T) {
	data, s := hubData(t, 100)
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	dir := filepath.Join(t.TempDir(), "backups")
	sch := &Scheduler{Dir: dir, Every: time.Hour, Keep: 2, Source: source(data, s), Logger: quiet,
		Now: func() time.Time { return now }}
	sch.Source.Now = nil
	for range 3 {
		if _, err := sch.BackupNow(context.Background()); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Hour)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"linli-hub-hub-20261206T110000Z.tar", "linli-hub-hub-20261206T120000Z.tar"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("backup dir %q, want %q", names, want)
	}
	for _, n := range names {
		if _, entries, err := Verify(filepath.Join(dir, n)); err != nil || entries != 101 {
			t.Fatalf("%s: %d entries, %v", n, entries, err)
		}
	}
	st := sch.Stats()
	if st.Failures != 0 || st.LastSize == 0 || !st.LastSuccess.Equal(now.Add(-time.Hour)) {
		t.Fatalf("stats %+v", st)
	}
	if last, ok := sch.newest(); !ok || !last.Equal(now.Add(-time.Hour)) {
		t.Fatalf("newest %v %v", last, ok)
	}

	// A backup dir that cannot be written is a counted failure.
	bad := &Scheduler{Dir: filepath.Join(data, "admin.token", "x"), Every: time.Hour, Keep: 1, Source: source(data, s), Logger: quiet}
	if _, err := bad.BackupNow(context.Background()); err == nil || bad.Stats().Failures != 1 {
		t.Fatalf("backup into a file's path: %v, stats %+v", err, bad.Stats())
	}
}

// Run takes the first backup at once when none is on disk and returns
// when its context ends.
func TestSchedulerRunStops(t *testing.T) {
	data, s := hubData(t, 10)
	dir := t.TempDir()
	sch := &Scheduler{Dir: dir, Every: time.Hour, Keep: 3, Source: source(data, s), Logger: quiet}
	sch.Source.Now = nil
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sch.Run(ctx); close(done) }()
	poll.WaitFor(t, "the first backup", func() bool { return !sch.Stats().LastSuccess.IsZero() })
	cancel()
	poll.WaitFor(t, "Run to return after cancel", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
}
