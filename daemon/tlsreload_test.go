package daemon_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// replaceFile writes data beside path and renames it over path, as a
// careful writer (and cert-manager's csi driver, and kubelet) does.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// certOf is the first certificate of a PEM file.
func certOf(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func poolOf(cas ...*tlsCA) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca.cert)
	}
	return pool
}

func caPEM(cas ...*tlsCA) []byte {
	var out []byte
	for _, ca := range cas {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	}
	return out
}

// serverSerialOf is the serial of the certificate the mutual-TLS listener
// shows a new connection, verified against roots for 127.0.0.1. The
// handshake offers no client certificate: under TLS 1.3 the client's side
// of it ends before the daemon refuses that.
func serverSerialOf(t testing.TB, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("a TLS handshake with the daemon: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// peerSerial is the serial of the server certificate of the connection a
// call went over.
func peerSerial(t testing.TB, p *peer.Peer) *big.Int {
	t.Helper()
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		t.Fatalf("the call's peer has %T, not TLS", p.AuthInfo)
	}
	return info.State.PeerCertificates[0].SerialNumber
}

// issueServer issues a server certificate for 127.0.0.1 into dir.
func issueServer(t testing.TB, ca *tlsCA, dir string) (certFile, keyFile string) {
	t.Helper()
	return ca.issue(t, dir, "server", &x509.Certificate{
		Subject: pkix.Name{CommonName: "portvakt"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// issueClient issues a client certificate for a SPIFFE ID into dir.
func issueClient(t testing.TB, ca *tlsCA, dir, name, id string) (certFile, keyFile string) {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return ca.issue(t, dir, name, &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, URIs: []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// rotateServer puts a new server certificate from ca, its key and ca
// alone as the client CA in place of the daemon's files in dir, each by
// rename, and returns the new certificate's serial.
func rotateServer(t testing.TB, ca *tlsCA, dir string) *big.Int {
	t.Helper()
	cert, key := issueServer(t, ca, t.TempDir())
	replaceFile(t, filepath.Join(dir, "server-key.pem"), readFile(t, key))
	replaceFile(t, filepath.Join(dir, "server.pem"), readFile(t, cert))
	replaceFile(t, filepath.Join(dir, "ca.pem"), caPEM(ca))
	return certOf(t, cert).SerialNumber
}

// secretVolume lays the daemon's TLS files out in dir as kubelet does a
// Secret volume: tls.crt, tls.key and ca.crt are symlinks into ..data,
// itself a symlink to the version's directory.
type secretVolume struct {
	dir     string
	version int
}

// put writes a version of the files and swaps ..data to it, as kubelet
// does: a new symlink renamed over the old, then the old version removed.
func (v *secretVolume) put(t testing.TB, cert, key string, ca []byte) {
	t.Helper()
	v.version++
	name := fmt.Sprintf("..2026_12_01_00_00_%02d.%d", v.version, v.version)
	dir := filepath.Join(v.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeRaw(t, filepath.Join(dir, "tls.crt"), readFile(t, cert))
	writeRaw(t, filepath.Join(dir, "tls.key"), readFile(t, key))
	writeRaw(t, filepath.Join(dir, "ca.crt"), ca)
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	if err := os.Symlink(name, filepath.Join(v.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(v.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

func tlsReloads(t *testing.T, metricsAddr, result string) float64 {
	t.Helper()
	v, _ := value(scrape(t, "http://"+metricsAddr+"/metrics"), "portvakt_tls_reloads_total", map[string]string{"result": result})
	return v
}

var ownToken = &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}

// TestTLSReloadOnFileChange: the mutual-TLS listener's certificate, key
// and client CA are replaced under a running daemon, each file by rename
// or all at once as kubelet updates a Secret volume: new connections get
// the new server certificate and are verified against the new CA alone,
// while a connection opened before keeps working.
func TestTLSReloadOnFileChange(t *testing.T) {
	tests := []struct {
		name string
		// setUp lays e's files out before the daemon starts; rotate puts
		// a set from ca in place and returns its server certificate.
		setUp  func(t *testing.T, e *env)
		rotate func(t *testing.T, e *env, ca *tlsCA) *x509.Certificate
	}{
		{"each file replaced by rename", func(*testing.T, *env) {},
			func(t *testing.T, e *env, ca *tlsCA) *x509.Certificate {
				rotateServer(t, ca, e.dir)
				return certOf(t, filepath.Join(e.dir, "server.pem"))
			}},
		{"a Kubernetes Secret volume", func(t *testing.T, e *env) {
			(&secretVolume{dir: filepath.Join(e.dir, "secret")}).put(t, filepath.Join(e.dir, "server.pem"), filepath.Join(e.dir, "server-key.pem"), caPEM(e.ca))
			e.edit(t, func(cfg string) string {
				return mustReplace(t, cfg, "cert_file: server.pem, key_file: server-key.pem, client_ca_file: ca.pem",
					"cert_file: secret/tls.crt, key_file: secret/tls.key, client_ca_file: secret/ca.crt")
			})
		}, func(t *testing.T, e *env, ca *tlsCA) *x509.Certificate {
			cert, key := issueServer(t, ca, t.TempDir())
			(&secretVolume{dir: filepath.Join(e.dir, "secret"), version: 1}).put(t, cert, key, caPEM(ca))
			return certOf(t, cert)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mptest.New(t, mptest.Options{NoSigner: true})
			e := prepare(t, w)
			tt.setUp(t, e)
			e.serve(t)
			addr, metricsAddr := e.tlsOpts.Address, e.daemon.Addresses()["metrics"]

			// A connection opened before the rotation.
			var before peer.Peer
			if _, err := e.mtls.API().GetToken(t.Context(), ownToken, grpc.Peer(&before)); err != nil {
				t.Fatalf("a call before the rotation: %v", err)
			}
			oldSerial := peerSerial(t, &before)

			reloaded := tlsReloads(t, metricsAddr, "ok")
			ca2 := newTLSCA(t, "Portvakt Test mTLS CA 2")
			cert := tt.rotate(t, e, ca2)
			waitFor(t, "a new connection to get the new server certificate", func() bool {
				return serverSerialOf(t, addr, poolOf(e.ca, ca2)).Cmp(cert.SerialNumber) == 0
			})

			// The connection from before is still served, on the old certificate.
			var after peer.Peer
			if _, err := e.mtls.API().GetToken(t.Context(), ownToken, grpc.Peer(&after)); err != nil {
				t.Fatalf("a call on the connection opened before the rotation: %v", err)
			}
			if got := peerSerial(t, &after); got.Cmp(oldSerial) != 0 {
				t.Fatalf("the old connection's server certificate is %s, want the one before the rotation (%s): the call was not on the old connection", got, oldSerial)
			}

			// The callers trust both CAs for the daemon's certificate: a
			// refusal below is the daemon's.
			trust := filepath.Join(t.TempDir(), "trust.pem")
			writeRaw(t, trust, caPEM(e.ca, ca2))
			// A client certificate from the new CA is accepted on a new connection.
			certFile, keyFile := issueClient(t, ca2, t.TempDir(), "billing", billingID)
			fresh := dial(t, client.Options{Address: addr, CertFile: certFile, KeyFile: keyFile, CAFile: trust})
			if _, err := fresh.API().GetToken(t.Context(), ownToken); err != nil {
				t.Fatalf("a client certificate from the new CA: %v", err)
			}
			// One from the old CA, which the client CA file no longer holds, is
			// refused on a new connection.
			stale := dial(t, client.Options{Address: addr, CertFile: e.clientCert, KeyFile: e.clientKey, CAFile: trust})
			_, err := stale.API().GetToken(t.Context(), ownToken)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("a client certificate from the removed CA on a new connection: %v, want the handshake refused (UNAVAILABLE)", err)
			}

			if tlsReloads(t, metricsAddr, "ok") <= reloaded {
				t.Error("portvakt_tls_reloads_total{result=\"ok\"} did not count the reload")
			}
			if got := metric(t, e, "portvakt_tls_certificate_not_after_timestamp_seconds", nil); got != float64(cert.NotAfter.Unix()) {
				t.Errorf("portvakt_tls_certificate_not_after_timestamp_seconds = %v, want the new certificate's %d", got, cert.NotAfter.Unix())
			}
			if got := metric(t, e, "portvakt_tls_watching", nil); got != 1 {
				t.Errorf("portvakt_tls_watching = %v while the watch runs", got)
			}
		})
	}
}

// TestTLSReloadEndsOldSessions: a client that resumed TLS sessions before
// a reload cannot resume one after it when the client CA now in force no
// longer holds its CA: a resumed session is no way around the CA check.
func TestTLSReloadEndsOldSessions(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := startDaemon(t, w)
	addr := e.tlsOpts.Address
	pair, err := tls.LoadX509KeyPair(e.clientCert, e.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	ca2 := newTLSCA(t, "Portvakt Test mTLS CA 2")
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: poolOf(e.ca, ca2),
		ClientSessionCache: tls.NewLRUClientSessionCache(8), MinVersion: tls.VersionTLS13}
	// call makes a GetToken on a connection of its own.
	call := func() (resumed bool, err error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var p peer.Peer
		if _, err := portvaktv1.NewTokenServiceClient(conn).GetToken(t.Context(), ownToken, grpc.Peer(&p)); err != nil {
			return false, err
		}
		return p.AuthInfo.(credentials.TLSInfo).State.DidResume, nil
	}
	if _, err := call(); err != nil {
		t.Fatal(err)
	}
	// The ticket comes after the handshake: the next connections resume.
	waitFor(t, "a connection to resume a session", func() bool {
		resumed, err := call()
		if err != nil {
			t.Fatal(err)
		}
		return resumed
	})

	newSerial := rotateServer(t, ca2, e.dir)
	waitFor(t, "a new connection to get the new server certificate", func() bool {
		return serverSerialOf(t, addr, poolOf(e.ca, ca2)).Cmp(newSerial) == 0
	})
	resumed, err := call()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a client of the removed CA with a session from before the reload: resumed %v, error %v; want the handshake refused (UNAVAILABLE)", resumed, err)
	}
}

// refusal is a logged refusal to reload the TLS files.
type refusal struct {
	Msg   string `json:"msg"`
	File  string `json:"file"`
	Error string `json:"error"`
}

// refusals are the daemon's logged refusals to reload the TLS files.
func refusals(t testing.TB, logs string) []refusal {
	t.Helper()
	var out []refusal
	for line := range strings.Lines(logs) {
		var r refusal
		if json.Unmarshal([]byte(line), &r) == nil && strings.HasPrefix(r.Msg, "TLS files not reloaded") {
			out = append(out, r)
		}
	}
	return out
}

// TestTLSReloadRefusesBadFiles: a file of the set that does not load
// leaves the set before in force (new connections get the old server
// certificate, and the old CA's clients are served), and the refusal is
// logged naming the file and what is wrong, and counted.
func TestTLSReloadRefusesBadFiles(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := startDaemon(t, w)
	addr, metricsAddr := e.tlsOpts.Address, e.daemon.Addresses()["metrics"]
	serverFile, keyFile, caFile := filepath.Join(e.dir, "server.pem"), filepath.Join(e.dir, "server-key.pem"), filepath.Join(e.dir, "ca.pem")
	serial := certOf(t, serverFile).SerialNumber
	_, otherKey := issueServer(t, e.ca, t.TempDir())
	serverPEM := readFile(t, serverFile)
	// The callers' copy of the CA, apart from the daemon's file broken below.
	callers := e.tlsOpts
	callers.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	writeRaw(t, callers.CAFile, readFile(t, caFile))

	tests := []struct {
		name  string
		file  string
		write func(path string)
		want  string
	}{
		{"a certificate caught half-written", serverFile,
			// Written in place, and read before the writer is done.
			func(p string) { writeRaw(t, p, serverPEM[:len(serverPEM)/2]) }, "a PEM block that does not end"},
		{"a key that is not the certificate's", keyFile,
			func(p string) { replaceFile(t, p, readFile(t, otherKey)) }, "private key does not match public key"},
		{"a client CA file without a certificate", caFile,
			func(p string) { replaceFile(t, p, []byte("# the CA goes here\n")) }, "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := readFile(t, tt.file)
			failed, ok := tlsReloads(t, metricsAddr, "failed"), tlsReloads(t, metricsAddr, "ok")
			tt.write(tt.file)
			waitFor(t, "the reload to be refused", func() bool { return tlsReloads(t, metricsAddr, "failed") > failed })

			var named bool
			for _, r := range refusals(t, e.logs.String()) {
				if r.File == tt.file && strings.Contains(r.Error, tt.file) && strings.Contains(r.Error, tt.want) {
					named = true
				}
			}
			if !named {
				t.Errorf("no refusal logged naming %s and %q:\n%s", tt.file, tt.want, e.logs.String())
			}
			if got := serverSerialOf(t, addr, poolOf(e.ca)); got.Cmp(serial) != 0 {
				t.Fatalf("a new connection gets serial %s, want the certificate in force before (%s)", got, serial)
			}
			if _, err := dial(t, callers).API().GetToken(t.Context(), ownToken); err != nil {
				t.Fatalf("a new connection with the CA in force before: %v", err)
			}

			// The good file back: in force again (unchanged), and counted ok.
			replaceFile(t, tt.file, good)
			waitFor(t, "the good file to be taken", func() bool { return tlsReloads(t, metricsAddr, "ok") > ok })
		})
	}
}

// writeRaw writes in place, as a writer caught in the middle would leave
// the file.
func writeRaw(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTLSReloadOnSIGHUP: the daemon's TLS files are symlinks into a
// directory the daemon does not watch (only ..data swaps are followed
// through symlinks), so a change there takes SIGHUP, which reloads them
// beside the policy.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := prepare(t, w)
	real := filepath.Join(t.TempDir(), "real")
	links := filepath.Join(e.dir, "tls")
	for _, dir := range []string{real, links} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"server.pem", "server-key.pem", "ca.pem"} {
		if err := os.Rename(filepath.Join(e.dir, name), filepath.Join(real, name)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(real, name), filepath.Join(links, name)); err != nil {
			t.Fatal(err)
		}
	}
	e.edit(t, func(cfg string) string {
		return mustReplace(t, cfg, "cert_file: server.pem, key_file: server-key.pem, client_ca_file: ca.pem",
			"cert_file: tls/server.pem, key_file: tls/server-key.pem, client_ca_file: tls/ca.pem")
	})
	p := startProcess(t, e, 0)
	waitFor(t, "the daemon to serve", func() bool {
		return healthOf(t, processHealth(t, p), "") == healthpb.HealthCheckResponse_SERVING
	})
	addr := processAddress(t, e, "tcp")

	reloaded := processMetrics(t, e)("portvakt_tls_reloads_total", map[string]string{"result": "ok"})
	ca2 := newTLSCA(t, "Portvakt Test mTLS CA 2")
	newSerial := rotateServer(t, ca2, real)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new connection to get the new server certificate after SIGHUP", func() bool {
		return serverSerialOf(t, addr, poolOf(e.ca, ca2)).Cmp(newSerial) == 0
	})
	certFile, keyFile := issueClient(t, ca2, t.TempDir(), "billing", billingID)
	c := dial(t, client.Options{Address: addr, CertFile: certFile, KeyFile: keyFile, CAFile: filepath.Join(real, "ca.pem")})
	if _, err := c.API().GetToken(t.Context(), ownToken); err != nil {
		t.Fatalf("a client certificate from the new CA after SIGHUP: %v", err)
	}
	if got := processMetrics(t, e)("portvakt_tls_reloads_total", map[string]string{"result": "ok"}); got <= reloaded {
		t.Errorf("portvakt_tls_reloads_total{result=\"ok\"} = %v after SIGHUP", got)
	}
}

// conns remembers the client's TCP connections, so that a test can cut
// them and make the client connect anew.
type conns struct {
	mu   sync.Mutex
	list []net.Conn
}

func (c *conns) dial(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err == nil {
		c.mu.Lock()
		c.list = append(c.list, conn)
		c.mu.Unlock()
	}
	return conn, err
}

func (c *conns) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.list {
		_ = conn.Close()
	}
	c.list = nil
}

// TestClientReloadsItsTLSFiles: a Client's certificate, key and CA files
// are replaced; its next connection presents the new certificate (the
// daemon sees the new identity) and verifies the daemon against the new
// CA, with no new Client.
func TestClientReloadsItsTLSFiles(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := startDaemon(t, w)
	addr := e.tlsOpts.Address
	dir := t.TempDir()
	files := client.Options{Address: addr, CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), CAFile: filepath.Join(dir, "ca.crt")}
	install := func(cert, key string, ca []byte) {
		replaceFile(t, files.KeyFile, readFile(t, key))
		replaceFile(t, files.CertFile, readFile(t, cert))
		replaceFile(t, files.CAFile, ca)
	}
	install(e.clientCert, e.clientKey, caPEM(e.ca))
	var tcp conns
	c, err := client.Dial(files, grpc.WithContextDialer(tcp.dial))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	identities := func() []string {
		resp, err := c.API().WhoAmI(t.Context(), &portvaktv1.WhoAmIRequest{})
		if err != nil {
			return nil // reconnecting
		}
		return resp.GetIdentities()
	}
	if got := identities(); len(got) != 1 || got[0] != billingID {
		t.Fatalf("identities %v, want [%s]", got, billingID)
	}

	// A new identity from the same CA.
	const rotated = "spiffe://portvakt.test/ns/billing/sa/api-rotated"
	cert, key := issueClient(t, e.ca, t.TempDir(), "billing-rotated", rotated)
	install(cert, key, caPEM(e.ca))
	tcp.cut()
	waitFor(t, "the client's next connection to present the new certificate", func() bool {
		got := identities()
		return len(got) == 1 && got[0] == rotated
	})

	// The daemon moves to another CA, and the client's CA file with it.
	ca2 := newTLSCA(t, "Portvakt Test mTLS CA 2")
	newSerial := rotateServer(t, ca2, e.dir)
	waitFor(t, "the daemon to take its new certificate", func() bool {
		return serverSerialOf(t, addr, poolOf(e.ca, ca2)).Cmp(newSerial) == 0
	})
	cert, key = issueClient(t, ca2, t.TempDir(), "billing", billingID)
	install(cert, key, caPEM(ca2))
	tcp.cut()
	waitFor(t, "the client to verify the daemon against its new CA", func() bool {
		var p peer.Peer
		_, err := c.API().GetToken(t.Context(), ownToken, grpc.Peer(&p))
		return err == nil && peerSerial(t, &p).Cmp(newSerial) == 0
	})
}
