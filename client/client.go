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
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// Options say how to reach the daemon: a Socket, or an Address with a
// client certificate.
type Options struct {
	// Socket is the daemon's Unix socket path.
	Socket string
	// Address is host:port of the daemon's mutual-TLS listener.
	Address string
	// CertFile and KeyFile are this service's client certificate and key.
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

// Dial connects lazily: errors in reaching the daemon show at the first call.
func Dial(opts Options, extra ...grpc.DialOption) (*Client, error) {
	var target string
	var creds credentials.TransportCredentials
	switch {
	case opts.Socket != "" && opts.Address != "":
		return nil, errors.New("give a socket or an address, not both")
	case opts.Socket != "":
		// The kernel carries the bytes and proves the uid; nothing to encrypt.
		target, creds = "unix://"+opts.Socket, insecure.NewCredentials()
	case opts.Address != "":
		tlsConfig, err := TLSConfig(opts)
		if err != nil {
			return nil, err
		}
		target, creds = "dns:///"+opts.Address, credentials.NewTLS(tlsConfig)
	default:
		return nil, errors.New("give the daemon's socket path or its address")
	}
	conn, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to portvakt at %s: %w", target, err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Client{conn: conn, api: portvaktv1.NewTokenServiceClient(conn), now: opts.Now}, nil
}

// TLSConfig is the client side of the daemon's mutual TLS, for callers that make
// their own gRPC connection.
func TLSConfig(opts Options) (*tls.Config, error) {
	if opts.CertFile == "" || opts.KeyFile == "" || opts.CAFile == "" {
		return nil, errors.New("mutual TLS needs a client certificate, its key and the daemon's CA")
	}
	cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	pem, err := os.ReadFile(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("daemon CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("daemon CA file %s holds no PEM certificate", opts.CAFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: opts.ServerName, MinVersion: tls.VersionTLS12}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// API is the raw gRPC client, for WhoAmI and ListEnvironments.
func (c *Client) API() portvaktv1.TokenServiceClient { return c.api }

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

// Token asks the daemon for a token.
func (c *Client) Token(ctx context.Context, req Request) (*oauth2.Token, error) {
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
	resp, err := c.api.GetToken(ctx, pb)
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{
		AccessToken: resp.GetAccessToken(),
		TokenType:   resp.GetTokenType(),
		Expiry:      resp.GetExpiresAt().AsTime(),
	}, nil
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
