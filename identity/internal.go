package identity

import (
	"context"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// TransportInternal is the transport of the daemon's own requests (a key
// rotation's tokens and probes): no connection, so no peer to name.
const TransportInternal = "internal"

// internalAuthInfo names a part of the daemon acting on its own. Only
// Internal makes one: no connection's handshake can.
type internalAuthInfo struct {
	credentials.CommonAuthInfo
	id string
}

func (internalAuthInfo) AuthType() string { return TransportInternal }

// Internal is ctx carrying the daemon itself as the caller, named
// "internal:"+part, for the audit records of what it does on its own.
func Internal(ctx context.Context, part string) context.Context {
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: internalAuthInfo{id: "internal:" + part}})
}
