package tokenservice

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/mpsim"
	"github.com/portvakt/portvakt/policy"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

// signedBy is a Recorder that keeps which key signed each grant.
type signedBy struct {
	mu   sync.Mutex
	uses []KeyUse
}

func (k *signedBy) RateLimited(context.Context, RateLimited) error { return nil }
func (k *signedBy) Decision(context.Context, *Decision) error      { return nil }
func (k *signedBy) Outcome(context.Context, Outcome) error         { return nil }
func (k *signedBy) KeyChange(context.Context, KeyChange) error     { return nil }
func (k *signedBy) KeyUse(_ context.Context, u KeyUse) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.uses = append(k.uses, u)
	return nil
}

func (k *signedBy) signers() []*signer.Signer {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*signer.Signer, len(k.uses))
	for i, u := range k.uses {
		out[i] = u.Signer
	}
	return out
}

type fixedPolicy struct{ p *policy.Policy }

func (f fixedPolicy) Current() *policy.Policy { return f.p }

// TestSetSigningSwitchesWithoutRestart: SetSigning switches the key new
// grants are signed with while the service runs; a fetch under way when
// it is called finishes with the key it began with. Real parts: grants
// signed in SoftHSM2 by two certified keys, posted to the simulator.
func TestSetSigningSwitchesWithoutRestart(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	next := w.CertifiedKeyFor(t, "next", mptest.OwnOrg)
	pol, err := policy.Parse("policy.yaml", fmt.Appendf(nil, "clients:\n  - name: me\n    identities: [\"uid:%d\"]\n    rules:\n      - {environments: [sim], scopes: [%s]}\n", os.Getuid(), mptest.ScopeOwn))
	if err != nil {
		t.Fatal(err)
	}
	env := &Environment{Config: maskinporten.Environment{Name: "sim", Issuer: w.Issuer, TokenEndpoint: w.Endpoint}, ClientID: mptest.ClientID}
	env.SetSigning(&SigningKey{Builder: builderOf(t, w.Signer.Signer), Signer: w.Signer.Signer})
	rec := &signedBy{}
	s, err := New(Options{Environments: []*Environment{env}, Policies: fixedPolicy{pol}, Client: maskinporten.NewClient(maskinporten.ClientOptions{}), Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	ctx := asThisUser(t)
	get := func(resource string) error {
		_, err := s.GetToken(ctx, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: resource})
		return err
	}

	// A fetch held up at Maskinporten while the key is switched.
	w.Sim.SetFaults(mpsim.Faults{Latency: 500 * time.Millisecond})
	inFlight := make(chan error, 1)
	go func() { inFlight <- get("https://first.example") }()
	for deadline := time.Now().Add(10 * time.Second); w.Sim.Stats().TokenRequests == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first fetch never reached the simulator")
		}
	}
	env.SetSigning(&SigningKey{Builder: builderOf(t, next), Signer: next})
	if err := <-inFlight; err != nil {
		t.Fatalf("the fetch under way at the switch: %v", err)
	}
	w.Sim.SetFaults(mpsim.Faults{})
	if err := get("https://second.example"); err != nil {
		t.Fatalf("a fetch after the switch: %v", err)
	}
	used := rec.signers()
	if len(used) != 2 || used[0] != w.Signer.Signer || used[1] != next {
		t.Fatalf("the grants were signed by %v; want the old key, then the new (%p, %p)", used, w.Signer.Signer, next)
	}
}

// TestListEnvironmentsDuringTakeover: however ListEnvironments meets a
// successor's takeover, it shows either the old certificate with the
// successor waiting or the new one with none: never the old with none
// (CI once saw that, with the successor read after the signing key).
func TestListEnvironmentsDuringTakeover(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	next := w.CertifiedKeyFor(t, "next", mptest.OwnOrg)
	env := &Environment{Config: maskinporten.Environment{Name: "sim", Issuer: w.Issuer, TokenEndpoint: w.Endpoint}, ClientID: mptest.ClientID}
	s, err := New(Options{Environments: []*Environment{env}, Client: maskinporten.NewClient(maskinporten.ClientOptions{}), Recorder: &signedBy{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	ctx := asThisUser(t)
	oldKey := &SigningKey{Builder: builderOf(t, w.Signer.Signer), Signer: w.Signer.Signer}
	newKey := &SigningKey{Builder: builderOf(t, next), Signer: next}
	newLabel := next.KeyLabel()
	for range 300 {
		env.SetSigning(oldKey)
		env.SetSuccessor(&Succession{Key: newKey, At: time.Now()})
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := env.Succeed(time.Now(), nil); err != nil {
				t.Error(err)
			}
		}()
		for {
			resp, err := s.ListEnvironments(ctx, &portvaktv1.ListEnvironmentsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			e := resp.GetEnvironments()[0]
			if e.GetSuccessor() == nil && e.GetKeyLabel() != newLabel {
				t.Fatalf("ListEnvironments shows key %s and no successor: the takeover half seen", e.GetKeyLabel())
			}
			if e.GetSuccessor() != nil && e.GetKeyLabel() == newLabel {
				t.Fatalf("ListEnvironments shows the successor waiting and signing at once")
			}
			select {
			case <-done:
			default:
				continue
			}
			break
		}
	}
}

// builderOf is a grant builder of x5c grants signed by s.
func builderOf(t *testing.T, s *signer.Signer) *maskinporten.GrantBuilder {
	t.Helper()
	b, err := maskinporten.NewGrantBuilder(s, maskinporten.GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// asThisUser is the test's context as a call over the Unix socket by
// this process's user.
func asThisUser(t *testing.T) context.Context {
	return peer.NewContext(t.Context(), &peer.Peer{AuthInfo: identity.UnixAuthInfo{UID: uint32(os.Getuid()), CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}})
}
