// Package client lets a Go service get Maskinporten tokens from Portvakt
// in a few lines, as an oauth2.TokenSource:
//
//	c, err := client.Dial(client.Options{Socket: "/run/portvakt/portvakt.sock"})
//	...
//	src := c.TokenSource(client.Request{Scopes: []string{"svv:kjoretoy/ecoc"}, Environment: "prod"})
//	httpClient := oauth2.NewClient(ctx, src)
//
// It connects over the Unix socket (the daemon knows the caller by its
// uid and gid) or with mutual TLS (by its client certificate).
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portvakt/portvakt/internal/backoff"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// Options say how to reach the daemon: a Socket, or an Address with a
// client certificate.
type Options struct {
	// Socket is the daemon's Unix socket path.
	Socket string
	// Address is host:port of the daemon's mutual-TLS listener, or
	// dns:///name:port for replicas behind one DNS name: every address
	// the name resolves to is used, in turn (round robin).
	Address string
	// Addresses are host:port of several replicas' mutual-TLS listeners,
	// instead of Address: calls are spread over them in turn (round
	// robin), and a call a replica answers UNAVAILABLE (or that cannot
	// reach it) is tried again on another, within the call's deadline.
	// They must share one server name (the certificate is checked for
	// ServerName, or the first address's host).
	Addresses []string
	// CertFile and KeyFile are this service's client certificate and key.
	// They and CAFile are read again at a connection's handshake after any
	// of them changed, so that a rotated certificate is presented without
	// a new Client.
	CertFile, KeyFile string
	// CAFile holds the CA that issued the daemon's server certificate.
	CAFile string
	// ServerName overrides the name checked in the server certificate.
	ServerName string
	// Now is the clock a TokenSource judges a token's expiry by. Default
	// time.Now; tests set another.
	Now func() time.Time
}

// Client is a connection to the daemon.
type Client struct {
	conn *grpc.ClientConn
	api  portvaktv1.TokenServiceClient
	now  func() time.Time
}

// SocketEnv is the environment variable that names the daemon's Unix
// socket for a Dial whose Options name no socket and no address.
const SocketEnv = "PORTVAKT_SOCKET"

// Dial connects lazily: errors in reaching the daemon show at the first call.
// Options that name neither a Socket nor an Address (nor Addresses) use the
// socket $PORTVAKT_SOCKET (SocketEnv) names; with that unset too, Dial
// fails.
func Dial(opts Options, extra ...grpc.DialOption) (*Client, error) {
	if opts.Socket == "" && opts.Address == "" && len(opts.Addresses) == 0 {
		opts.Socket = os.Getenv(SocketEnv)
	}
	var target string
	var creds credentials.TransportCredentials
	var dialOpts []grpc.DialOption
	switch {
	case opts.Socket != "" && (opts.Address != "" || len(opts.Addresses) > 0):
		return nil, errors.New("give a socket or an address, not both")
	case opts.Address != "" && len(opts.Addresses) > 0:
		return nil, errors.New("give Address or Addresses, not both")
	case opts.Socket != "":
		// The kernel carries the bytes and proves the uid; nothing to encrypt.
		target, creds = "unix://"+opts.Socket, insecure.NewCredentials()
	case opts.Address != "" || len(opts.Addresses) > 0:
		files, err := openTLSFiles(opts)
		if err != nil {
			return nil, err
		}
		tlsConfig := baseTLSConfig(opts)
		creds = files.credentials(tlsConfig)
		dialOpts = append(dialOpts, grpc.WithDefaultServiceConfig(serviceConfig))
		switch {
		case len(opts.Addresses) > 0:
			r := manual.NewBuilderWithScheme(fmt.Sprintf("portvakt-%d", resolverSeq.Add(1)))
			addrs := make([]resolver.Address, len(opts.Addresses))
			for i, a := range opts.Addresses {
				addrs[i] = resolver.Address{Addr: a}
			}
			r.InitialState(resolver.State{Addresses: addrs})
			dialOpts = append(dialOpts, grpc.WithResolvers(r))
			target = r.Scheme() + ":///" + opts.Addresses[0]
			if tlsConfig.ServerName == "" {
				host, _, err := net.SplitHostPort(opts.Addresses[0])
				if err != nil {
					return nil, fmt.Errorf("address %q: %w", opts.Addresses[0], err)
				}
				tlsConfig.ServerName = host
				creds = files.credentials(tlsConfig)
			}
		case strings.Contains(opts.Address, ":///"):
			target = opts.Address // dns:///name:port
		default:
			target = "dns:///" + opts.Address
		}
	default:
		return nil, errors.New("give the daemon's socket path or its address, or set " + SocketEnv)
	}
	dialOpts = append(dialOpts, grpc.WithTransportCredentials(creds))
	conn, err := grpc.NewClient(target, append(dialOpts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to portvakt at %s: %w", target, err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Client{conn: conn, api: portvaktv1.NewTokenServiceClient(conn), now: opts.Now}, nil
}

// serviceConfig spreads calls over every address (round robin) and tries
// a call that got UNAVAILABLE again, up to 5 attempts in all, waiting
// 50 ms, 100 ms, 200 ms … (up to 1 s, with gRPC's jitter) between them:
// the next attempt goes to the next replica, and a short blip of the HSM
// behind all replicas (about 2 s) is ridden out. Attempts never outlast
// the call's deadline. Only UNAVAILABLE is retried: the daemon says it
// when no token was issued (HSM or audit log away, shutting down), so a
// retry never makes a caller hold two tokens for one call.
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{"service": "portvakt.v1.TokenService"}],
    "waitForReady": false,
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.05s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// resolverSeq names each Dial's resolver scheme apart.
var resolverSeq atomic.Int64

// TLSConfig is the client side of the daemon's mutual TLS, for callers
// that make their own gRPC connection. The client certificate and key are
// read again at a handshake after their files changed; the daemon's CA is
// the one in CAFile now (Dial's connections read it again too).
func TLSConfig(opts Options) (*tls.Config, error) {
	files, err := openTLSFiles(opts)
	if err != nil {
		return nil, err
	}
	return files.config(baseTLSConfig(opts)), nil
}

// baseTLSConfig is the client's TLS configuration without its files.
func baseTLSConfig(opts Options) *tls.Config {
	return &tls.Config{ServerName: opts.ServerName, MinVersion: tls.VersionTLS12}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// API is the raw gRPC client, for WhoAmI and ListEnvironments.
func (c *Client) API() portvaktv1.TokenServiceClient { return c.api }

// Keys is the raw gRPC client of the daemon's KeyService: an
// environment's registered keys.
func (c *Client) Keys() portvaktv1.KeyServiceClient { return portvaktv1.NewKeyServiceClient(c.conn) }

// Request is what a token is asked for.
type Request struct {
	Scopes      []string
	Environment string
	ConsumerOrg string
	Resource    string
	// SystemUser, when set, asks for the token of an Altinn system user:
	// the customer's, not together with ConsumerOrg.
	SystemUser *SystemUser
	// MinValidity is how long the token must stay valid at least. A
	// TokenSource asks for at least EarlyExpiry + 15 s.
	MinValidity time.Duration
	// Timeout bounds each call a TokenSource makes to the daemon (Token
	// takes its caller's context instead). Default 10 s.
	Timeout time.Duration
}

// SystemUser names an Altinn system user by its customer.
type SystemUser struct {
	// Org is the customer's organisation number, nine digits.
	Org string
	// ExternalRef is the external reference the customer's system user
	// was created with; empty for none.
	ExternalRef string
}

// Token asks the daemon for a token. An UNAVAILABLE answer is tried
// again (on another replica, when there are several) while ctx allows.
// Call options, such as grpc.Header to read the x-request-id, apply to
// every attempt; the last one's header is what is left.
func (c *Client) Token(ctx context.Context, req Request, callOpts ...grpc.CallOption) (*oauth2.Token, error) {
	pb := &portvaktv1.GetTokenRequest{
		Scopes:      req.Scopes,
		Environment: req.Environment,
		ConsumerOrg: req.ConsumerOrg,
		Resource:    req.Resource,
		MinValidity: durationpb.New(req.MinValidity),
	}
	if su := req.SystemUser; su != nil {
		pb.SystemUser = &portvaktv1.SystemUser{Org: su.Org, ExternalRef: su.ExternalRef}
	}
	resp, err := c.getToken(ctx, pb, callOpts)
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{
		AccessToken: resp.GetAccessToken(),
		TokenType:   resp.GetTokenType(),
		Expiry:      resp.GetExpiresAt().AsTime(),
	}, nil
}

// Retry bounds of Token: after gRPC's own quick attempts on the other
// replicas, a call the daemon still answers UNAVAILABLE with a RetryInfo
// (the HSM behind them all away for a moment) waits its delay, at least
// retryMin and at most retryMax, and tries again, for as long as the
// caller's deadline allows.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 2 * time.Second
	// retryBudget bounds the retries of a call without a deadline.
	retryBudget = 30 * time.Second
)

// getToken calls GetToken, and again after an UNAVAILABLE that the
// daemon answered with a RetryInfo (no token was issued, and it says when
// to come back: the HSM or the audit log away for a moment), while ctx
// allows, and for at most retryBudget when ctx has no deadline. An
// UNAVAILABLE without one (no replica reachable at all, a TLS handshake
// refused) is returned at once: gRPC has tried the other replicas already.
func (c *Client) getToken(ctx context.Context, req *portvaktv1.GetTokenRequest, callOpts []grpc.CallOption) (*portvaktv1.GetTokenResponse, error) {
	giveUp := time.Now().Add(retryBudget)
	for {
		resp, err := c.api.GetToken(ctx, req, callOpts...)
		st, _ := status.FromError(err)
		if err == nil || st.Code() != codes.Unavailable {
			return resp, err
		}
		wait, advised := time.Duration(0), false
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				wait, advised = ri.GetRetryDelay().AsDuration(), true
			}
		}
		if !advised {
			return nil, err
		}
		wait = min(max(wait, retryMin), retryMax)
		wait = backoff.Jitter(wait)
		dl, ok := ctx.Deadline()
		if !ok {
			dl = giveUp
		}
		if time.Until(dl) < wait {
			return nil, err // no time for another attempt: the caller gets what the last one got
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// EarlyExpiry is how long before its expiry a TokenSource stops using a
// token: enough for a request to reach the API with it.
const EarlyExpiry = 30 * time.Second

// tokenSourceMinValidity is what a TokenSource asks of a new token at
// least: a little more than it keeps in reserve, so that a token is used
// for a while; and short enough against Maskinporten's 120 s tokens that
// the daemon's refresh ahead has a new token ready before the source comes
// back for one (the daemon refreshes when a token falls below what its
// callers ask plus a margin).
const tokenSourceMinValidity = EarlyExpiry + 15*time.Second

// TokenSource returns a token source for one kind of token. It keeps the
// token until EarlyExpiry before it expires and asks the daemon (which
// caches too, and refreshes ahead) for a new one then; each call to the
// daemon is bounded by req.Timeout.
func (c *Client) TokenSource(req Request) oauth2.TokenSource {
	req.MinValidity = max(req.MinValidity, tokenSourceMinValidity)
	if req.Timeout <= 0 {
		req.Timeout = 10 * time.Second
	}
	return &source{c: c, req: req}
}

// source reuses a token until EarlyExpiry before its expiry. It is
// oauth2.ReuseTokenSourceWithExpiry with the client's clock.
type source struct {
	c   *Client
	req Request

	mu  sync.Mutex
	tok *oauth2.Token
}

func (s *source) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.c.now().Before(s.tok.Expiry.Add(-EarlyExpiry)) {
		return s.tok, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.req.Timeout)
	defer cancel()
	tok, err := s.c.Token(ctx, s.req)
	if err != nil {
		return nil, err
	}
	s.tok = tok
	return tok, nil
}
