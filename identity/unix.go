package identity

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"

	"github.com/portvakt/portvakt/syntax"
)

// UnixAuthInfo is what the kernel says of the process at the other end of
// a Unix socket, read once when the connection is accepted.
type UnixAuthInfo struct {
	credentials.CommonAuthInfo
	UID, GID uint32
	PID      int32
	// identities are UID's and GID's, spelled once for all the
	// connection's calls.
	identities []string
}

// AuthType implements credentials.AuthInfo.
func (UnixAuthInfo) AuthType() string { return "unix-peercred" }

// UnixCredentials are gRPC server credentials for a Unix socket: no
// encryption (the kernel carries the bytes), and the peer's uid, gid and
// pid from SO_PEERCRED as its identity.
func UnixCredentials() credentials.TransportCredentials { return unixCredentials{} }

type unixCredentials struct{}

func (unixCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("peer credentials need a Unix socket connection, got %T", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("reading peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("reading peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("reading peer credentials (SO_PEERCRED): %w", credErr)
	}
	return conn, UnixAuthInfo{
		// A Unix socket never leaves the machine: as private as TLS.
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		UID:            cred.Uid, GID: cred.Gid, PID: cred.Pid,
		identities: syntax.UnixPeerIdentities(cred.Uid, cred.Gid),
	}, nil
}

func (unixCredentials) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, UnixAuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (unixCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}

func (c unixCredentials) Clone() credentials.TransportCredentials { return c }

//nolint:staticcheck // part of the interface until grpc removes it
func (unixCredentials) OverrideServerName(string) error { return nil }
