package client_test

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portvakt/portvakt/client"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// recordingServer answers GetToken with a fixed token and keeps the
// requests it got: what the client puts on the wire.
type recordingServer struct {
	portvaktv1.UnimplementedTokenServiceServer
	mu   sync.Mutex
	reqs []*portvaktv1.GetTokenRequest
}

func (s *recordingServer) GetToken(_ context.Context, req *portvaktv1.GetTokenRequest) (*portvaktv1.GetTokenResponse, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	return &portvaktv1.GetTokenResponse{AccessToken: "token", TokenType: "Bearer", ExpiresAt: timestamppb.Now()}, nil
}

func serveRecording(t *testing.T) (*recordingServer, string) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "portvakt.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rec := &recordingServer{}
	portvaktv1.RegisterTokenServiceServer(srv, rec)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return rec, socket
}

// TestTokenSendsTheSystemUser: Request.SystemUser becomes the request's
// system_user, its reference included, and a request without one sends
// none.
func TestTokenSendsTheSystemUser(t *testing.T) {
	rec, socket := serveRecording(t)
	c, err := client.Dial(client.Options{Socket: socket})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reqs := []client.Request{
		{Scopes: []string{"svv:kjoretoy/ecoc"}, Environment: "prod", SystemUser: &client.SystemUser{Org: "313427137", ExternalRef: "ref-1"}},
		{Scopes: []string{"svv:kjoretoy/ecoc"}, Environment: "prod"},
	}
	for _, r := range reqs {
		if _, err := c.Token(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.TokenSource(reqs[0]).Token(); err != nil {
		t.Fatal(err)
	}
	want := &portvaktv1.SystemUser{Org: "313427137", ExternalRef: "ref-1"}
	if len(rec.reqs) != 3 || !proto.Equal(rec.reqs[0].GetSystemUser(), want) || !proto.Equal(rec.reqs[2].GetSystemUser(), want) {
		t.Fatalf("requests = %v", rec.reqs)
	}
	if rec.reqs[1].SystemUser != nil {
		t.Fatalf("a request without a system user sent %v", rec.reqs[1].SystemUser)
	}
}
