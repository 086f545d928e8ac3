package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

const systemUserCLIPolicy = `clients:
  - name: billing
    identities: [uid:1000]
    rules:
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc]
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc]
        system_users: ["313427137"]
`

func TestPolicyExplainSystemUser(t *testing.T) {
	file := writePolicy(t, systemUserCLIPolicy)
	base := []string{"explain", "--policy", file, "--identity", "uid:1000", "--env", "prod", "--scope", "svv:kjoretoy/ecoc"}
	tests := []struct {
		name   string
		args   []string
		out    string
		denied bool
	}{
		{"a listed system user", []string{"--system-user", "313427137"},
			"ALLOW  client billing (identity uid:1000) for system user 313427137 by rule " + file + ":7\n", false},
		{"own behalf, by the other rule", nil,
			"ALLOW  client billing (identity uid:1000) by rule " + file + ":5\n", false},
		{"a customer not listed", []string{"--system-user", "923456783"},
			`DENY   client "billing" has no rule allowing scope svv:kjoretoy/ecoc in environment prod for system user 923456783; its rules for this scope list other system users (system_users)` + "\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runPolicy(t, append(base, tt.args...)...)
			if out != tt.out {
				t.Errorf("explain printed %q\nwant %q", out, tt.out)
			}
			var d denied
			if tt.denied != errors.As(err, &d) || !tt.denied && err != nil {
				t.Fatalf("explain returned %v, want denied: %v", err, tt.denied)
			}
		})
	}
	_, _, err := runPolicy(t, append(base, "--system-user", "313427137", "--consumer-org", "974760673")...)
	var usage usageError
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), "not both") {
		t.Errorf("explain with --system-user and --consumer-org = %v, want a usage error", err)
	}
}

// tokenRecorder is a daemon stand-in that keeps the GetToken requests it
// gets: what `portvakt token` puts on the wire.
type tokenRecorder struct {
	portvaktv1.UnimplementedTokenServiceServer
	mu   sync.Mutex
	reqs []*portvaktv1.GetTokenRequest
}

func (s *tokenRecorder) GetToken(_ context.Context, req *portvaktv1.GetTokenRequest) (*portvaktv1.GetTokenResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	return &portvaktv1.GetTokenResponse{AccessToken: "opaque", TokenType: "Bearer", ExpiresAt: timestamppb.New(time.Now().Add(time.Minute))}, nil
}

func TestTokenCommandSystemUser(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "pv.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rec := &tokenRecorder{}
	portvaktv1.RegisterTokenServiceServer(srv, rec)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		cmd := newTokenCommand()
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		cmd.SetArgs(append([]string{"--socket", socket, "--env", "prod", "--scope", "svv:kjoretoy/ecoc"}, args...))
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.Execute()
		return out.String(), err
	}
	if _, err := run("--system-user", "313427137", "--system-user-ref", "kjoretoy-prod-1", "--raw"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("--system-user", "313427137", "--raw"); err != nil {
		t.Fatal(err)
	}
	if len(rec.reqs) != 2 ||
		!proto.Equal(rec.reqs[0].GetSystemUser(), &portvaktv1.SystemUser{Org: "313427137", ExternalRef: "kjoretoy-prod-1"}) ||
		!proto.Equal(rec.reqs[1].GetSystemUser(), &portvaktv1.SystemUser{Org: "313427137"}) || rec.reqs[0].GetConsumerOrg() != "" {
		t.Fatalf("requests = %v", rec.reqs)
	}
	for _, args := range [][]string{
		{"--system-user-ref", "kjoretoy-prod-1"},
		{"--system-user", "313427137", "--consumer-org", "974760673"},
	} {
		_, err := run(args...)
		var usage usageError
		if !errors.As(err, &usage) {
			t.Errorf("token %v = %v, want a usage error", args, err)
		}
	}
	if len(rec.reqs) != 2 {
		t.Fatalf("a usage error sent a request: %v", rec.reqs[2:])
	}
}
