package identity

import (
	"net"

	"google.golang.org/grpc/credentials"
)

// TLSAuthInfo is credentials.TLSInfo with the caller it proves, named
// once when the connection's handshake is done rather than on every
// call: naming a certificate's holder (its URI SAN as a string, say)
// was a tenth of a cached call's CPU beyond the no-op's.
type TLSAuthInfo struct {
	credentials.TLSInfo
	caller Caller
	err    error // why the certificate names no caller, if it does not
}

// TLSCredentials wraps server TLS credentials so that each connection's
// AuthInfo is a TLSAuthInfo, its caller named at the handshake. A
// connection whose certificate names no caller is still accepted, as
// before; each of its calls is refused with the reason.
func TLSCredentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	return tlsCredentials{inner}
}

type tlsCredentials struct {
	credentials.TransportCredentials
}

func (c tlsCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		return conn, info, err
	}
	tlsInfo, ok := info.(credentials.TLSInfo)
	if !ok {
		return conn, info, nil
	}
	caller, err := tlsCaller(tlsInfo)
	return conn, TLSAuthInfo{TLSInfo: tlsInfo, caller: caller, err: err}, nil
}

func (c tlsCredentials) Clone() credentials.TransportCredentials {
	return tlsCredentials{c.TransportCredentials.Clone()}
}
