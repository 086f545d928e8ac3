package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portvakt/portvakt/client"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// replica is a canned TokenService: it answers with its name, or with
// UNAVAILABLE while down is set.
type replica struct {
	portvaktv1.UnimplementedTokenServiceServer
	name  string
	down  atomic.Bool
	calls atomic.Int64
	addr  string
	srv   *grpc.Server
}

func (r *replica) GetToken(context.Context, *portvaktv1.GetTokenRequest) (*portvaktv1.GetTokenResponse, error) {
	r.calls.Add(1)
	if r.down.Load() {
		st, _ := status.New(codes.Unavailable, r.name+": the HSM is unavailable").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(100 * time.Millisecond)})
		return nil, st.Err()
	}
	return &portvaktv1.GetTokenResponse{AccessToken: r.name, TokenType: "Bearer", ExpiresAt: timestamppb.New(time.Now().Add(time.Minute))}, nil
}

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir.
func pki(t *testing.T, dir string) (server tls.Certificate, pool *x509.CertPool, opts client.Options) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	issue := func(serial int64, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	write := func(name, kind string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sDER, sKey := issue(2, &x509.Certificate{Subject: pkix.Name{CommonName: "portvakt"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	server = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := issue(3, &x509.Certificate{Subject: pkix.Name{CommonName: "billing"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	keyDER, _ := x509.MarshalECPrivateKey(cKey)
	opts = client.Options{CAFile: write("ca.pem", "CERTIFICATE", caDER), CertFile: write("client.pem", "CERTIFICATE", cDER), KeyFile: write("client-key.pem", "EC PRIVATE KEY", keyDER)}
	return server, pool, opts
}

// startReplicas serves n canned replicas over mutual TLS.
func startReplicas(t *testing.T, n int) ([]*replica, client.Options) {
	t.Helper()
	cert, pool, opts := pki(t, t.TempDir())
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	var rs []*replica
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{name: string(rune('a' + i)), addr: lis.Addr().String(), srv: grpc.NewServer(grpc.Creds(creds))}
		portvaktv1.RegisterTokenServiceServer(r.srv, r)
		go func() { _ = r.srv.Serve(lis) }()
		t.Cleanup(r.srv.Stop)
		rs = append(rs, r)
		opts.Addresses = append(opts.Addresses, r.addr)
	}
	return rs, opts
}

func token(t *testing.T, c *client.Client, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	tok, err := c.Token(ctx, client.Request{Scopes: []string{"svv:kjoretoy/ecoc"}})
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// TestAddressesSpreadCalls: calls go to every replica in turn.
func TestAddressesSpreadCalls(t *testing.T) {
	rs, opts := startReplicas(t, 3)
	c, err := client.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]int{}
	for range 30 {
		name, err := token(t, c, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen[name]++
	}
	for _, r := range rs {
		if seen[r.name] < 5 {
			t.Fatalf("calls per replica %v: want them spread over all three", seen)
		}
	}
}

// TestUnavailableRetriedOnAnother: a replica that answers UNAVAILABLE, or
// is gone, costs the caller nothing: the call is served by another.
func TestUnavailableRetriedOnAnother(t *testing.T) {
	rs, opts := startReplicas(t, 3)
	c, err := client.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rs[0].down.Store(true)
	for range 20 {
		name, err := token(t, c, 5*time.Second)
		if err != nil || name == rs[0].name {
			t.Fatalf("with replica a UNAVAILABLE: %q, %v", name, err)
		}
	}
	if rs[0].calls.Load() == 0 {
		t.Fatal("replica a was never asked: the test tested nothing")
	}
	rs[1].srv.Stop() // gone altogether
	for range 20 {
		if name, err := token(t, c, 5*time.Second); err != nil || name != rs[2].name {
			t.Fatalf("with a UNAVAILABLE and b gone: %q, %v", name, err)
		}
	}
	// A blip on all of them is ridden out within the deadline.
	rs[2].down.Store(true)
	time.AfterFunc(700*time.Millisecond, func() { rs[2].down.Store(false) })
	if name, err := token(t, c, 5*time.Second); err != nil || name != rs[2].name {
		t.Fatalf("across a 700 ms blip of the last replica: %q, %v", name, err)
	}
}

// TestAllReplicasDownFailsWithinDeadline: with every replica UNAVAILABLE
// the call fails, with UNAVAILABLE, by its deadline.
func TestAllReplicasDownFailsWithinDeadline(t *testing.T) {
	rs, opts := startReplicas(t, 3)
	c, err := client.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, r := range rs {
		r.down.Store(true)
	}
	start := time.Now()
	_, err = token(t, c, time.Second)
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("a call with a 1 s deadline took %s", took)
	}
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Fatalf("all replicas down: %v, want UNAVAILABLE or DEADLINE_EXCEEDED", err)
	}
	var calls int64
	for _, r := range rs {
		calls += r.calls.Load()
	}
	if calls < 3 {
		t.Fatalf("%d attempts in a second; want the call retried", calls)
	}
	for _, r := range rs {
		r.srv.Stop()
	}
	start = time.Now()
	_, err = token(t, c, time.Second)
	if took := time.Since(start); err == nil || took > 1500*time.Millisecond {
		t.Fatalf("every replica gone: %v after %s", err, took)
	}
}
