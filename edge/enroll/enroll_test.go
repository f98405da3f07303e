package enroll_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/edge/enroll"
	"linli/shared/identity"
	"linli/shared/test/poll"
)

// hub is a stand-in for the hub's enrollment endpoints on loopback: it
// serves caPEM, answers an enrollment with answer (or refuses with
// status), and keeps the public keys it was shown.
type hub struct {
	srv    *httptest.Server
	caPEM  []byte
	hubKey ed25519.PublicKey

	mu     sync.Mutex
	status int // 0: 201 with answer
	answer identity.EnrollResponse
	keys   []string
	state  int // Check's status (0: 200 "ok")
	open   int // connections not closed yet
}

func newHub(t *testing.T, tls bool) *hub {
	t.Helper()
	h := &hub{}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h.hubKey = pub
	h.answer = identity.EnrollResponse{ID: "kiosk-b1", Site: "xiangyang", Role: "kiosk", MQTTUsername: "kiosk-b1",
		MQTTPassword: "secret", HubID: "hub", HubKey: identity.EncodePublic(pub)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/ca.pem", func(w http.ResponseWriter, _ *http.Request) { w.Write(h.caPEM) })
	mux.HandleFunc("POST /api/v1/enroll", func(w http.ResponseWriter, r *http.Request) {
		var req identity.EnrollRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.keys = append(h.keys, req.PublicKey)
		if h.status != 0 {
			w.WriteHeader(h.status)
			json.NewEncoder(w).Encode(map[string]string{"error": "token already used"})
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(h.answer)
	})
	mux.HandleFunc("POST /api/v1/identity", func(w http.ResponseWriter, r *http.Request) {
		var req identity.StateRequest
		json.NewDecoder(r.Body).Decode(&req)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.state != 0 {
			http.Error(w, "no", h.state)
			return
		}
		json.NewEncoder(w).Encode(identity.StateResponse{ID: req.ID, Identity: "ok"})
	})
	h.srv = httptest.NewUnstartedServer(mux)
	h.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		h.mu.Lock()
		defer h.mu.Unlock()
		switch st {
		case http.StateNew:
			h.open++
		case http.StateClosed, http.StateHijacked:
			h.open--
		}
	}
	if tls {
		// httptest's certificate is self-signed and a CA: the site CA here.
		h.srv.StartTLS()
		h.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw})
		h.answer.CAPEM = "not the pinned CA"
	} else {
		h.srv.Start()
	}
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hub) enrolls() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.keys) }

func (h *hub) conns() int { h.mu.Lock(); defer h.mu.Unlock(); return h.open }

func token(t *testing.T, fingerprint string) string {
	t.Helper()
	tok, err := identity.NewToken(fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

// files lists what the identity directory holds.
func files(t *testing.T, data string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(data, enroll.Dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// Bad settings are refused before anything is asked or stored, naming
// what is wrong.
func TestEnrollRefusesBadSettings(t *testing.T) {
	h := newHub(t, false)
	good := token(t, "")
	for _, tc := range []struct {
		name, hub, token, want string
	}{
		{"no token", h.srv.URL, "", "token"},
		{"not a token", h.srv.URL, "hello", "token"},
		{"short secret", h.srv.URL, "lt1.abc", "token"},
		{"bad fingerprint", h.srv.URL, good + ".zz", "token"},
		{"short fingerprint", h.srv.URL, good + ".abcd", "token"},
		{"no scheme", "127.0.0.1:8080", good, "want http(s)://host:port"},
		{"other scheme", "ftp://127.0.0.1:21", good, "want http(s)://host:port"},
		{"no host", "http://", good, "want http(s)://host:port"},
		{"plain HTTP off loopback", "http://192.0.2.1:8080", good, "plain HTTP is only for loopback"},
		{"TLS without a pinned CA", "https://127.0.0.1:1", good, "no CA fingerprint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			_, err := enroll.Enroll(context.Background(), enroll.Options{Hub: tc.hub, Token: tc.token, DataDir: data, RetryMax: 1})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Enroll: %v, want an error about %q", err, tc.want)
			}
			if tc.want == "token" && !errors.Is(err, identity.ErrToken) {
				t.Errorf("Enroll: %v does not wrap identity.ErrToken", err)
			}
			if f := files(t, data); len(f) != 0 {
				t.Errorf("a refused enrollment left %v", f)
			}
		})
	}
	if n := h.enrolls(); n != 0 {
		t.Errorf("the hub was asked %d times", n)
	}
}

// On loopback the enrollment may use plain HTTP; what the hub answers is
// stored and reads back, with the key the hub was shown.
func TestEnrollOnLoopbackWithoutTLS(t *testing.T) {
	h := newHub(t, false)
	data := t.TempDir()
	got, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, ""), DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := enroll.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []*enroll.Identity{got, loaded} {
		if id.ID != "kiosk-b1" || id.Site != "xiangyang" || id.MQTTPassword != "secret" || id.Hub != h.srv.URL ||
			!id.HubPub.Equal(h.hubKey) {
			t.Errorf("identity %+v", id)
		}
	}
	if pub := identity.EncodePublic(loaded.Key.Public().(ed25519.PublicKey)); len(h.keys) != 1 || h.keys[0] != pub {
		t.Errorf("the hub was shown %v, the stored key is %s", h.keys, pub)
	}
	if conf, err := loaded.TLSConfig(); err != nil || conf != nil {
		t.Errorf("TLS config of an identity without a CA: %v, %v; want none", conf, err)
	}
}

// Over HTTPS the edge trusts the hub's CA only if its fingerprint is the
// one in the token; otherwise it refuses before it shows its key.
func TestEnrollPinsTheCA(t *testing.T) {
	h := newHub(t, true)
	// Every httptest TLS server has the same certificate: another CA is
	// any other fingerprint.
	otherFP := identity.Fingerprint([]byte("another site's CA"))

	data := t.TempDir()
	_, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, otherFP), DataDir: data, RetryMax: 1})
	if err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("Enroll against a CA the token does not pin: %v, want a refusal", err)
	}
	if h.enrolls() != 0 || len(files(t, data)) != 0 {
		t.Fatalf("after the refusal: %d enrollments, files %v", h.enrolls(), files(t, data))
	}

	fp := identity.Fingerprint(h.srv.Certificate().Raw)
	id, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, fp), DataDir: data, RetryMax: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(id.CAPEM), h.caPEM) {
		t.Errorf("stored CA %q, want the pinned one, not the answer's", id.CAPEM)
	}
	// The stored CA is what later connections trust.
	loaded, err := enroll.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := enroll.Check(context.Background(), loaded); err != nil || st.Identity != "ok" {
		t.Errorf("Check over the pinned CA: %+v, %v", st, err)
	}
}

// A refusal is ErrRefused with the hub's reason; the device key stays for
// the retry, which shows the hub the same key.
func TestEnrollRefusedKeepsTheKey(t *testing.T) {
	h := newHub(t, false)
	h.status = http.StatusForbidden
	data := t.TempDir()
	_, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, ""), DataDir: data})
	if !errors.Is(err, enroll.ErrRefused) || !strings.Contains(err.Error(), "token already used") {
		t.Fatalf("Enroll: %v, want ErrRefused with the hub's reason", err)
	}
	if _, err := enroll.Load(data); !errors.Is(err, enroll.ErrNotEnrolled) {
		t.Errorf("Load after a refusal: %v, want ErrNotEnrolled", err)
	}
	h.mu.Lock()
	h.status = 0
	h.mu.Unlock()
	if _, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, ""), DataDir: data}); err != nil {
		t.Fatal(err)
	}
	if len(h.keys) != 2 || h.keys[0] != h.keys[1] {
		t.Errorf("keys shown: %v, want the same key twice", h.keys)
	}
}

// The identity file is replaced whole or not at all: a bad answer leaves
// the stored identity as it was, and no temporary file stays behind.
func TestIdentityIsWrittenAtomically(t *testing.T) {
	h := newHub(t, false)
	data := t.TempDir()
	if _, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, ""), DataDir: data}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(data, enroll.Dir, "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(*identity.EnrollResponse){
		func(a *identity.EnrollResponse) { a.ID = "../etc" },
		func(a *identity.EnrollResponse) { a.HubKey = "not a key" },
		// Stored, it would fail every later connection instead of this
		// enrollment.
		func(a *identity.EnrollResponse) { a.CAPEM = "not a certificate" },
	} {
		h.mu.Lock()
		bad(&h.answer)
		h.mu.Unlock()
		if _, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, ""), DataDir: data}); err == nil {
			t.Fatal("Enroll with a bad answer: want an error")
		}
		h.mu.Lock()
		h.answer.ID, h.answer.HubKey, h.answer.CAPEM = "kiosk-b1", identity.EncodePublic(h.hubKey), ""
		h.mu.Unlock()
	}
	after, err := os.ReadFile(filepath.Join(data, enroll.Dir, "identity.json"))
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("identity changed by a failed enrollment (%v):\n%s\nwas\n%s", err, after, before)
	}
	if f := files(t, data); strings.Join(f, " ") != "device.key identity.json" {
		t.Errorf("identity dir holds %v, want only device.key and identity.json", f)
	}
	info, err := os.Stat(filepath.Join(data, enroll.Dir, "identity.json"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("identity.json mode %v (%v), want 0600: it holds the broker password", info.Mode(), err)
	}
}

func TestCheck(t *testing.T) {
	h := newHub(t, false)
	data := t.TempDir()
	if _, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, ""), DataDir: data}); err != nil {
		t.Fatal(err)
	}
	id, err := enroll.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status  int
		want    string
		wantErr bool
	}{
		{0, "ok", false},
		{http.StatusNotFound, "revoked", false},
		{http.StatusForbidden, "revoked", false},
		{http.StatusInternalServerError, "", true},
	} {
		h.mu.Lock()
		h.state = tc.status
		h.mu.Unlock()
		st, err := enroll.Check(context.Background(), id)
		if (err != nil) != tc.wantErr || st.Identity != tc.want {
			t.Errorf("hub answers %d: %+v, %v; want %q (error %v)", tc.status, st, err, tc.want, tc.wantErr)
		}
	}
}

func TestMainNamesMissingSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--token", "t", "--data", "d"}, `"hub"`},
		{[]string{"--hub", "http://127.0.0.1:1", "--data", "d"}, `"token"`},
		{[]string{"--hub", "http://127.0.0.1:1", "--token", "t"}, `"data"`},
	} {
		var out, errb bytes.Buffer
		if code := enroll.Main(context.Background(), tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("Main(%v) = %d, %q; want 2 naming %s", tc.args, code, errb.String(), tc.want)
		}
	}
}

// Each call to the hub makes its own HTTP client: once it returns, no
// connection of it may stay open. A fleet enrolled at once otherwise held
// one idle connection per device, in the installer's process and in the
// hub, until the transport's idle timeout (or for good, for a transport
// that has none).
func TestCallsLeaveNoConnectionOpen(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
		call func(h *hub, data string) error
	}{
		{"enroll", false, func(h *hub, data string) error {
			_, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, ""), DataDir: data})
			return err
		}},
		{"enroll pinning the CA", true, func(h *hub, data string) error {
			_, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL,
				Token: token(t, identity.Fingerprint(h.srv.Certificate().Raw)), DataDir: data})
			return err
		}},
		{"check", false, func(h *hub, data string) error {
			id, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, ""), DataDir: data})
			if err != nil {
				return err
			}
			_, err = enroll.Check(context.Background(), id)
			return err
		}},
		{"fetch trust", false, func(h *hub, data string) error {
			id, err := enroll.Enroll(context.Background(), enroll.Options{Hub: h.srv.URL, Token: token(t, ""), DataDir: data})
			if err != nil {
				return err
			}
			_, _, err = enroll.FetchTrust(context.Background(), id)
			if err == nil {
				return errors.New("this hub serves no bundle, yet FetchTrust found one")
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHub(t, tt.tls)
			if err := tt.call(h, t.TempDir()); err != nil {
				t.Fatal(err)
			}
			poll.Eventually(t, 5*time.Second, func() (bool, string) {
				return h.conns() == 0, fmt.Sprintf("%d connections still open", h.conns())
			})
		})
	}
}
