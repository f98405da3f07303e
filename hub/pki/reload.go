package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// ExpiryWarning is how long before its end a server certificate is
// warned about in the log.
const ExpiryWarning = 30 * 24 * time.Hour

// Holder serves the hub's current server certificate to every TLS
// listener and swaps it when its files change, so a rotated certificate
// is served from the next handshake without a restart. Create it with
// NewHolder.
type Holder struct {
	load  func() (tls.Certificate, error)
	files []string
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	cert     *tls.Certificate
	notAfter time.Time
	seen     string // the files' sizes and mtimes at the last load attempt
	warned   time.Time
}

// NewHolder loads the certificate with load, which reads files (the
// certificate and its key), and holds it.
func NewHolder(load func() (tls.Certificate, error), files []string, log *slog.Logger) (*Holder, error) {
	h := &Holder{load: load, files: files, log: log, now: time.Now}
	if err := h.Reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (h *Holder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cert, nil
}

// ServerConfig is a TLS server config that serves the held certificate.
func (h *Holder) ServerConfig() *tls.Config {
	return &tls.Config{GetCertificate: h.GetCertificate, MinVersion: tls.VersionTLS12}
}

// NotAfter is the end of the held certificate's validity.
func (h *Holder) NotAfter() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.notAfter
}

// Reload loads the certificate again. On failure the one held stays in
// service and the error says why.
func (h *Holder) Reload() error {
	sig := h.signature()
	cert, err := h.load()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen = sig
	if err != nil {
		return fmt.Errorf("reload TLS certificate: %w", err)
	}
	if len(cert.Certificate) == 0 {
		return errors.New("reload TLS certificate: no certificate in the file")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("reload TLS certificate: %w", err)
	}
	changed := h.cert != nil && !h.notAfter.Equal(leaf.NotAfter)
	h.cert, h.notAfter, h.warned = &cert, leaf.NotAfter, time.Time{}
	if changed {
		h.log.Info("TLS server certificate reloaded", "subject", leaf.Subject.CommonName, "not_after", leaf.NotAfter.UTC())
	}
	h.warnLocked()
	return nil
}

// warnLocked logs a warning once a day while the certificate is within
// ExpiryWarning of its end. Callers hold h.mu.
func (h *Holder) warnLocked() {
	now := h.now()
	left := h.notAfter.Sub(now)
	if left > ExpiryWarning || (!h.warned.IsZero() && now.Sub(h.warned) < 24*time.Hour) {
		return
	}
	h.warned = now
	h.log.Warn("TLS server certificate expires soon: rotate it (see docs/operations.md, certificate rotation)",
		"not_after", h.notAfter.UTC(), "days_left", int(left.Hours()/24))
}

// signature is the files' sizes and mtimes, which change when a file is
// rewritten (or replaced by a rename).
func (h *Holder) signature() string {
	var b strings.Builder
	for _, f := range h.files {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:missing;", f)
		}
	}
	return b.String()
}

// Watch reloads when the files change (polled every interval) and once a
// day (a certificate the hub issues itself is renewed then), and repeats
// the expiry warning, until ctx ends.
func (h *Holder) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	daily := h.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		seen := h.seen
		h.warnLocked()
		h.mu.Unlock()
		if sig := h.signature(); sig == seen && h.now().Sub(daily) < 24*time.Hour {
			continue
		}
		daily = h.now()
		if err := h.Reload(); err != nil {
			// A certificate and key written one after the other are
			// briefly mismatched; the next change is tried again.
			h.log.Error("TLS certificate files changed but cannot be loaded; still serving the previous certificate", "err", err)
		}
	}
}
