// Package identity says who is calling the daemon, as the transport proved
// it: the verified client certificate of a mutual-TLS connection, or the
// uid and gid the kernel reports for the process at the other end of a
// Unix socket (SO_PEERCRED). The policy matches these identity strings;
// nothing a caller merely claims is ever used.
package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/portvakt/portvakt/syntax"
)

// Transports a caller can arrive by.
const (
	TransportMTLS     = "mtls"
	TransportUnix     = "unix"
	TransportInsecure = "insecure"
)

// Caller is the proven identity of a gRPC caller.
type Caller struct {
	// Transport is mtls, unix or insecure.
	Transport string
	// Identities are the strings the policy matches, most specific first:
	// for mTLS one of "spiffe://…" (any URI SAN), "dns:NAME" or "cn:NAME";
	// for a Unix socket "uid:N" then "gid:N". They are the connection's,
	// shared by its calls: read them, never change them.
	Identities []string
	// PID is the Unix peer's process id (0 for TCP), for logs only: a pid
	// can be reused and proves nothing.
	PID int32
}

// ErrNoIdentity means the connection proves no identity (plaintext TCP).
var ErrNoIdentity = errors.New("the connection carries no caller identity: connect over the Unix socket or with a client certificate")

// FromContext reads the caller of a gRPC call.
func FromContext(ctx context.Context) (Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Caller{Transport: TransportInsecure}, ErrNoIdentity
	}
	switch info := p.AuthInfo.(type) {
	case UnixAuthInfo:
		ids := info.identities
		if ids == nil { // not made by UnixCredentials' ServerHandshake
			ids = syntax.UnixPeerIdentities(info.UID, info.GID)
		}
		return Caller{Transport: TransportUnix, Identities: ids, PID: info.PID}, nil
	case TLSAuthInfo:
		return info.caller, info.err
	case internalAuthInfo:
		return Caller{Transport: TransportInternal, Identities: []string{info.id}}, nil
	case credentials.TLSInfo: // credentials not wrapped by TLSCredentials
		return tlsCaller(info)
	default:
		return Caller{Transport: TransportInsecure}, ErrNoIdentity
	}
}

// tlsCaller is the caller a verified client certificate names.
func tlsCaller(info credentials.TLSInfo) (Caller, error) {
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return Caller{Transport: TransportMTLS}, errors.New("the client certificate was not verified")
	}
	id, err := FromCertificate(chains[0][0])
	if err != nil {
		return Caller{Transport: TransportMTLS}, err
	}
	return Caller{Transport: TransportMTLS, Identities: []string{id}}, nil
}

// FromCertificate names a client certificate's holder: its URI SAN (a
// SPIFFE ID, say), else its DNS SAN as "dns:NAME", else its subject CN as
// "cn:NAME". The first of each kind is used. The strings are made by the
// policy's constructors, the one place identities are spelled, so that a
// certificate cannot pose as another kind of caller (a URI SAN "uid:0" is
// not the Unix user root: it is refused).
func FromCertificate(cert *x509.Certificate) (string, error) {
	switch {
	case len(cert.URIs) > 0:
		id, ok := syntax.URIIdentity(cert.URIs[0])
		if !ok {
			return "", fmt.Errorf("client certificate %q: URI SAN %q cannot identify a caller (use scheme://host/…, such as a SPIFFE ID)", cert.Subject, cert.URIs[0].String())
		}
		return id, nil
	case len(cert.DNSNames) > 0:
		return syntax.DNSIdentity(cert.DNSNames[0]), nil
	case cert.Subject.CommonName != "":
		return syntax.CNIdentity(cert.Subject.CommonName), nil
	default:
		return "", fmt.Errorf("client certificate %q (serial %x) has no URI SAN, DNS SAN or common name to identify it by", cert.Subject, cert.SerialNumber)
	}
}
