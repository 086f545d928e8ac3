package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// probeTimeout bounds each question the check asks of a listener that is
// already taken.
const probeTimeout = 2 * time.Second

// listeners checks that each listener could be opened: the socket's
// directory is there or can be made, each address is free or held by a
// running Portvakt, and the TLS files load. Nothing is opened to stay.
func (c *checker) listeners(ctx context.Context) {
	l := c.d.cfg.Listen
	if u := l.Unix; u != nil {
		c.unixSocket(ctx, u.Path, u.Mode, u.Group)
	}
	if t := l.TCP; t != nil {
		var serverCert []byte
		if !t.Insecure {
			tlsConfig, err := tlsFiles{cert: t.CertFile, key: t.KeyFile, ca: t.ClientCAFile}.load()
			if c.report.result(err, "listen.tcp TLS", "", "the server certificate, its key and the client CAs load") {
				serverCert = tlsConfig.Certificates[0].Certificate[0]
			}
		}
		c.address(ctx, "listen.tcp.address", t.Address, func(ctx context.Context) bool {
			if t.Insecure {
				return answersAsPortvakt(ctx, t.Address, portvaktv1.TokenService_ServiceDesc.ServiceName)
			}
			return presentsCertificate(ctx, t.Address, serverCert)
		})
	}
	if h := l.Health; h != nil {
		c.address(ctx, "listen.health.address", h.Address, func(ctx context.Context) bool {
			return answersAsPortvakt(ctx, h.Address, LivenessService)
		})
	}
	if addr := c.d.cfg.Metrics.Address; addr != "" {
		c.address(ctx, "metrics.address", addr, func(ctx context.Context) bool { return servesPortvaktMetrics(ctx, addr) })
	}
}

// unixSocket checks the socket's path as listenUnix would take it.
func (c *checker) unixSocket(ctx context.Context, path, mode, group string) {
	const name = "listen.unix.path"
	if _, err := strconv.ParseUint(mode, 8, 32); err != nil {
		c.report.add(CheckFailed, name, "", fmt.Sprintf("listen.unix.mode %q: %v", mode, err))
		return
	}
	if group != "" {
		if _, err := lookupGroup(group); err != nil {
			c.report.add(CheckFailed, name, "", err.Error())
			return
		}
	}
	_, err := inspectSocket(path)
	switch {
	case errors.Is(err, errSocketInUse):
		if answersAsPortvakt(ctx, "unix://"+path, portvaktv1.TokenService_ServiceDesc.ServiceName) {
			c.report.add(CheckOK, name, "", fmt.Sprintf("%s is held by a running Portvakt", path))
			return
		}
		c.report.add(CheckFailed, name, "", err.Error())
	case err != nil:
		c.report.add(CheckFailed, name, "", err.Error())
	default:
		err := checkCreatable(path)
		c.report.result(err, name, "", fmt.Sprintf("serve can make the socket %s", path))
	}
}

// address checks that a TCP address is free, or held by a running
// Portvakt (as held tells), which a restart takes over.
func (c *checker) address(ctx context.Context, name, addr string, held func(context.Context) bool) {
	lis, err := net.Listen("tcp", addr)
	if err == nil {
		_ = lis.Close()
		c.report.add(CheckOK, name, "", fmt.Sprintf("%s is free", addr))
		return
	}
	if errors.Is(err, syscall.EADDRINUSE) && held(ctx) {
		c.report.add(CheckOK, name, "", fmt.Sprintf("%s is held by a running Portvakt", addr))
		return
	}
	c.report.add(CheckFailed, name, "", fmt.Sprintf("%s: %v", name, err))
}

// answersAsPortvakt reports whether target's gRPC health service knows
// service, as only Portvakt's does.
func answersAsPortvakt(ctx context.Context, target, service string) bool {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	return err == nil
}

// presentsCertificate reports whether the TLS server at addr presents the
// certificate cert (DER): this configuration's, so a Portvakt running it.
func presentsCertificate(ctx context.Context, addr string, cert []byte) bool {
	if cert == nil {
		return false
	}
	var presented []byte
	dialer := &tls.Dialer{Config: &tls.Config{
		// Only the certificate is looked at; no call is made.
		InsecureSkipVerify: true, //nolint:gosec // compared byte for byte below
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				presented = cs.PeerCertificates[0].Raw
			}
			return nil
		},
	}}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err == nil {
		_ = conn.Close()
	}
	// The server may refuse the handshake for want of a client
	// certificate: by then it has shown its own.
	return bytes.Equal(presented, cert)
}

// servesPortvaktMetrics reports whether addr serves Portvakt's metrics.
func servesPortvaktMetrics(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte("\nportvakt_"))
}

// checkCreatable says why path could not be made by serve, if it could
// not: its nearest existing ancestor must be a directory this process may
// make entries in (listenUnix and audit.Open make the folders between).
func checkCreatable(path string) error {
	dir := filepath.Dir(path)
	for {
		info, err := os.Stat(dir)
		if err == nil {
			if !info.IsDir() {
				return fmt.Errorf("%s is not a directory", dir)
			}
			if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
				return fmt.Errorf("%s cannot be made: %s is not writable by this user: %w", path, dir, err)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", dir, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return err
		}
		dir = parent
	}
}
