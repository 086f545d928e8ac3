package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc/credentials"

	"github.com/portvakt/portvakt/internal/tlsfiles"
)

// tlsFiles are the client's certificate, key and daemon CA files, read
// again at a handshake after any of them changed: identities such as
// SPIFFE's rotate hourly, and a long-lived Client must present the new
// certificate on its next connection. A change is seen by a stat of each
// file per handshake (size, modification time, and which file it is, so
// that a rename over it or a Kubernetes ..data swap counts); a library
// starts no goroutine to watch. A set that does not load (a file caught
// half-written, a key saved before its certificate) leaves the set before
// in use, and is tried again at the next handshake.
type tlsFiles struct {
	cert, key, ca string

	mu    sync.Mutex
	stats [3]os.FileInfo // of the set in use, in the order cert, key, ca
	pair  *tls.Certificate
	roots *x509.CertPool
}

// openTLSFiles reads the files, which must load now.
func openTLSFiles(opts Options) (*tlsFiles, error) {
	if opts.CertFile == "" || opts.KeyFile == "" || opts.CAFile == "" {
		return nil, errors.New("mutual TLS needs a client certificate, its key and the daemon's CA")
	}
	f := &tlsFiles{cert: opts.CertFile, key: opts.KeyFile, ca: opts.CAFile}
	if _, _, err := f.current(); err != nil {
		return nil, err
	}
	return f, nil
}

// current is the set in use, read again first if a file changed.
func (f *tlsFiles) current() (*tls.Certificate, *x509.CertPool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stats, changed := f.changed()
	if !changed {
		return f.pair, f.roots, nil
	}
	pair, err := tlsfiles.ReadKeyPair(f.cert, f.key)
	if err != nil {
		err = fmt.Errorf("client certificate: %w", err)
	}
	var roots *x509.CertPool
	if err == nil {
		if roots, err = tlsfiles.ReadCertPool(f.ca); err != nil {
			err = fmt.Errorf("daemon CA: %w", err)
		}
	}
	if err != nil {
		if f.pair == nil {
			return nil, nil, err
		}
		return f.pair, f.roots, nil // the set before; tried again next time
	}
	f.stats, f.pair, f.roots = stats, &pair, roots
	return f.pair, f.roots, nil
}

// changed stats the files and reports whether any differs from the set in
// use (or cannot be stat-ed: reading it then says why).
func (f *tlsFiles) changed() ([3]os.FileInfo, bool) {
	var stats [3]os.FileInfo
	changed := f.pair == nil
	for i, name := range []string{f.cert, f.key, f.ca} {
		st, err := os.Stat(name) // through symlinks: a ..data swap changes the file
		if err != nil {
			return stats, true
		}
		stats[i] = st
		old := f.stats[i]
		if old == nil || !os.SameFile(old, st) || !old.ModTime().Equal(st.ModTime()) || old.Size() != st.Size() {
			changed = true
		}
	}
	return stats, changed
}

// config is base with the client certificate read again when its files
// changed, at each handshake; its RootCAs are the CA as it is now.
func (f *tlsFiles) config(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	_, roots, _ := f.current() // loaded once at least: never nil
	cfg.RootCAs = roots
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		pair, _, err := f.current()
		return pair, err
	}
	return cfg
}

// credentials are gRPC's TLS credentials, made at each handshake from
// base and the files as they are then: the daemon's certificate is
// verified as by credentials.NewTLS, against the CA file's current
// certificates and the same server name.
func (f *tlsFiles) credentials(base *tls.Config) credentials.TransportCredentials {
	return &reloadingCredentials{files: f, base: base}
}

type reloadingCredentials struct {
	files *tlsFiles
	base  *tls.Config
}

func (c *reloadingCredentials) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	pair, roots, err := c.files.current()
	if err != nil {
		return nil, nil, err
	}
	cfg := c.base.Clone()
	cfg.RootCAs = roots
	// The pair read with the roots, for this handshake.
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair, nil }
	return credentials.NewTLS(cfg).ClientHandshake(ctx, authority, conn)
}

func (c *reloadingCredentials) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("portvakt client credentials are for the client side only")
}

func (c *reloadingCredentials) Info() credentials.ProtocolInfo {
	return credentials.NewTLS(c.base).Info()
}

func (c *reloadingCredentials) Clone() credentials.TransportCredentials {
	return &reloadingCredentials{files: c.files, base: c.base.Clone()}
}

// OverrideServerName is credentials.TransportCredentials'.
//
// Deprecated: as in gRPC, set the server name in Options instead.
func (c *reloadingCredentials) OverrideServerName(name string) error {
	c.base = c.base.Clone()
	c.base.ServerName = name
	return nil
}
