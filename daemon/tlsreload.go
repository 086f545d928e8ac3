package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/internal/filewatch"
	"github.com/portvakt/portvakt/internal/tlsfiles"
	"github.com/portvakt/portvakt/metrics"
)

// tlsReloader holds the mutual-TLS listener's server certificate, its key
// and the client CA, and replaces them when their files change or on
// SIGHUP: identities such as SPIFFE's rotate hourly. Each handshake takes
// the set in force (tls.Config.GetConfigForClient); connections already
// open keep the one they were made with. A set that does not load (a file
// half-written, a key that is not the certificate's, a CA file without a
// certificate) is refused whole, logged and counted, and the set before
// stays in force.
type tlsReloader struct {
	files   tlsFiles
	log     *slog.Logger
	metrics *metrics.Metrics
	watch   *filewatch.Watcher

	mu     sync.Mutex // serialises reloads
	loaded tlsPEM     // the files' contents in force
	cur    atomic.Pointer[tls.Config]
}

// tlsFiles are the listener's file names; tlsPEM their contents.
type tlsFiles struct{ cert, key, ca string }

type tlsPEM struct{ cert, key, ca []byte }

// tlsFileError is a file of the set that would not load.
type tlsFileError struct {
	field, path string // field is the configuration's: cert_file, ...
	err         error
}

func (e *tlsFileError) Error() string { return "listen.tcp." + e.field + ": " + e.err.Error() }

func (e *tlsFileError) Unwrap() error { return e.err }

// newTLSReloader loads the listener's files, which must load at start, and
// starts watching their directories.
func newTLSReloader(t *config.TCPListener, log *slog.Logger, m *metrics.Metrics) (*tlsReloader, error) {
	r := &tlsReloader{files: tlsFiles{cert: t.CertFile, key: t.KeyFile, ca: t.ClientCAFile}, log: log, metrics: m}
	pem, err := r.files.read()
	if err != nil {
		return nil, err
	}
	cfg, err := r.files.parse(pem)
	if err != nil {
		return nil, err
	}
	r.put(cfg, pem)
	r.watch, err = filewatch.New([]string{t.CertFile, t.KeyFile, t.ClientCAFile}, filewatch.Options{
		OnError: func(err error) { log.Warn("watching the TLS files", "error", err.Error()) },
	})
	if err != nil {
		return nil, fmt.Errorf("listen.tcp: watching the certificate files: %w (SIGHUP still reloads them)", err)
	}
	return r, nil
}

// serverConfig is what the listener is given: each handshake gets the set
// in force.
func (r *tlsReloader) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Only what GetConfigForClient returns is used; this is in case.
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load(), nil
		},
	}
}

// run reloads on every change to the files until ctx ends.
func (r *tlsReloader) run(ctx context.Context) {
	r.metrics.TLSWatching.Set(1)
	// The files may have changed since New; unchanged, this costs a read.
	_ = r.reload()
	if err := r.watch.Run(ctx, func() { _ = r.reload() }); err != nil && ctx.Err() == nil {
		r.metrics.TLSWatching.Set(0)
		r.log.Error("the TLS files are no longer watched: changes take effect only on SIGHUP", "error", err.Error())
	}
}

// close stops the watch of a reloader that will not run.
func (r *tlsReloader) close() {
	if r != nil {
		_ = r.watch.Close()
	}
}

// reload reads the files again and puts them in force when they load; the
// error (also logged and counted) says which file would not, and why.
func (r *tlsReloader) reload() error {
	if r == nil {
		return nil // no mutual-TLS listener
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pem, err := r.files.read()
	if err == nil && pem.equal(r.loaded) {
		// Watches see several events per save, and SIGHUP comes for the
		// policy too: nothing to replace.
		r.log.Debug("TLS files unchanged")
		r.metrics.TLSReloads.WithLabelValues("ok").Inc()
		return nil
	}
	var cfg *tls.Config
	if err == nil {
		cfg, err = r.files.parse(pem)
	}
	if err != nil {
		var fe *tlsFileError
		file := ""
		if errors.As(err, &fe) {
			file = fe.path
		}
		r.log.Error("TLS files not reloaded: the certificate, key and client CA before stay in force; fix the file and save it again (or send SIGHUP)",
			"file", file, "error", err.Error())
		r.metrics.TLSReloads.WithLabelValues("failed").Inc()
		return err
	}
	r.put(cfg, pem)
	leaf := cfg.Certificates[0].Leaf
	r.log.Info("TLS files reloaded", "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	r.metrics.TLSReloads.WithLabelValues("ok").Inc()
	return nil
}

func (r *tlsReloader) put(cfg *tls.Config, pem tlsPEM) {
	r.cur.Store(cfg)
	r.loaded = pem
	r.metrics.TLSCertNotAfter.Set(float64(cfg.Certificates[0].Leaf.NotAfter.Unix()))
}

// load reads and parses the files, as a reload does: what `serve --check`
// tries.
func (f tlsFiles) load() (*tls.Config, error) {
	p, err := f.read()
	if err != nil {
		return nil, err
	}
	return f.parse(p)
}

func (f tlsFiles) read() (tlsPEM, error) {
	var p tlsPEM
	for _, file := range []struct {
		field, path string
		data        *[]byte
	}{{"cert_file", f.cert, &p.cert}, {"key_file", f.key, &p.key}, {"client_ca_file", f.ca, &p.ca}} {
		data, err := os.ReadFile(file.path)
		if err != nil {
			return tlsPEM{}, &tlsFileError{field: file.field, path: file.path, err: err}
		}
		*file.data = data
	}
	return p, nil
}

func (p tlsPEM) equal(q tlsPEM) bool {
	return bytes.Equal(p.cert, q.cert) && bytes.Equal(p.key, q.key) && bytes.Equal(p.ca, q.ca)
}

// parse is the server's configuration from the files: it requires and
// verifies a client certificate from the CAs.
func (f tlsFiles) parse(p tlsPEM) (*tls.Config, error) {
	if _, err := tlsfiles.ParseCertificates(f.cert, p.cert); err != nil {
		return nil, &tlsFileError{field: "cert_file", path: f.cert, err: err}
	}
	pair, err := tlsfiles.KeyPair(f.cert, p.cert, f.key, p.key) // the certificate parses: what fails is the key
	if err != nil {
		return nil, &tlsFileError{field: "key_file", path: f.key, err: err}
	}
	pool, err := tlsfiles.CertPool(f.ca, p.ca)
	if err != nil {
		return nil, &tlsFileError{field: "client_ca_file", path: f.ca, err: err}
	}
	// A session resumed after a reload is checked against the CAs then in
	// force too: crypto/tls verifies the session's chains against
	// ClientCAs (TestTLSReloadEndsOldSessions).
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
