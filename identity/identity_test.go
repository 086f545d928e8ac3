package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/portvakt/portvakt/syntax"
)

func TestFromCertificate(t *testing.T) {
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
		err  string
	}{
		{"SPIFFE ID first", &x509.Certificate{URIs: []*url.URL{uri("spiffe://example.org/ns/a/sa/b")}, DNSNames: []string{"a.internal"}, Subject: pkix.Name{CommonName: "a"}}, "spiffe://example.org/ns/a/sa/b", ""},
		{"DNS SAN next", &x509.Certificate{DNSNames: []string{"Billing.Internal", "other"}, Subject: pkix.Name{CommonName: "a"}}, "dns:billing.internal", ""},
		{"CN last", &x509.Certificate{Subject: pkix.Name{CommonName: "billing-service"}}, "cn:billing-service", ""},
		// A URI SAN must not pose as a Unix peer or another kind of name.
		{"uid posing as root", &x509.Certificate{URIs: []*url.URL{uri("uid:0")}}, "", "cannot identify a caller"},
		{"gid posing", &x509.Certificate{URIs: []*url.URL{uri("gid:0")}}, "", "cannot identify a caller"},
		{"dns posing", &x509.Certificate{URIs: []*url.URL{uri("dns:billing.internal")}}, "", "cannot identify a caller"},
		{"nothing to go by", &x509.Certificate{}, "", "no URI SAN, DNS SAN or common name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromCertificate(tt.cert)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("FromCertificate = %q, %v; want an error saying %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FromCertificate = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestCallerNamedOncePerConnection: the caller of a connection made by
// the daemon's credentials is named at its handshake, so a call reads
// it without allocating: the same identities, from the same slice.
func TestCallerNamedOncePerConnection(t *testing.T) {
	cert := &x509.Certificate{URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/ns/prod/sa/billing"}}}
	tlsInfo := credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}
	caller, err := tlsCaller(tlsInfo)
	if err != nil {
		t.Fatal(err)
	}
	unixInfo := UnixAuthInfo{UID: 1000, GID: 100, PID: 42, identities: syntax.UnixPeerIdentities(1000, 100)}
	for _, tc := range []struct {
		name string
		info credentials.AuthInfo
		want []string
	}{
		{"mtls", TLSAuthInfo{TLSInfo: tlsInfo, caller: caller}, []string{"spiffe://example.org/ns/prod/sa/billing"}},
		{"unix", unixInfo, []string{"uid:1000", "gid:100"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: tc.info})
			first, err := FromContext(ctx)
			if err != nil || !slices.Equal(first.Identities, tc.want) {
				t.Fatalf("FromContext = %v, %v; want %v", first.Identities, err, tc.want)
			}
			allocs := testing.AllocsPerRun(100, func() {
				c, _ := FromContext(ctx)
				if &c.Identities[0] != &first.Identities[0] {
					t.Fatal("a call's identities are a new slice")
				}
			})
			if allocs != 0 {
				t.Errorf("FromContext allocates %.0f times a call, want 0: the caller is named on every call", allocs)
			}
		})
	}
}

// TestTLSCredentialsNameTheCaller: a real mutual-TLS handshake through
// TLSCredentials gives a TLSAuthInfo whose caller is the client
// certificate's URI SAN, and one without a usable name the reason.
func TestTLSCredentialsNameTheCaller(t *testing.T) {
	for _, tc := range []struct {
		name    string
		uri     string
		want    string
		wantErr string
	}{
		{"SPIFFE ID", "spiffe://example.org/svc", "spiffe://example.org/svc", ""},
		{"unusable URI SAN", "uid:0", "", "cannot identify a caller"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := handshake(t, tc.uri)
			ai, ok := info.(TLSAuthInfo)
			if !ok {
				t.Fatalf("AuthInfo is a %T, want TLSAuthInfo", info)
			}
			if ai.State.Version == 0 || len(ai.State.PeerCertificates) != 1 {
				t.Errorf("the TLSInfo inside is not the handshake's: %+v", ai.State)
			}
			ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: info})
			c, err := FromContext(ctx)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FromContext = %v, %v; want an error with %q", c, err, tc.wantErr)
				}
				return
			}
			if err != nil || c.Transport != TransportMTLS || !slices.Equal(c.Identities, []string{tc.want}) {
				t.Fatalf("FromContext = %+v, %v; want %s over mtls", c, err, tc.want)
			}
		})
	}
}
