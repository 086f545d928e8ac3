package daemon_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dto "github.com/prometheus/client_model/go"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/internal/p11kittest"
	"github.com/portvakt/portvakt/mpsim"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/selfservice"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// rotationWorld is a simulator whose integration has one registered key
// made in the HSM (label firstRegistered), accepted at once, and that
// accepts keys registered later through its self-service API only after
// activation; its tokens live lifetime.
type rotationWorld struct {
	*mptest.World
	firstKID string
}

const firstRegistered = "registered-0"

func newRotationWorld(t *testing.T, activation, lifetime time.Duration) *rotationWorld {
	return newRotationWorldWith(t, mptest.Options{KeyActivationDelay: activation, TokenLifetime: lifetime}, 0)
}

// newRotationWorldWith is newRotationWorld with the options given and
// others more keys registered beside the first (labelled other-N, not
// used by the daemon).
func newRotationWorldWith(t *testing.T, opts mptest.Options, others int) *rotationWorld {
	rw := &rotationWorld{}
	opts.NoSigner = true
	opts.RegisteredKeys = func(t testing.TB, tok softhsmtest.Token) map[string]crypto.PublicKey {
		keys := map[string]crypto.PublicKey{}
		for i := range others + 1 {
			label := fmt.Sprintf("other-%d", i)
			if i == 0 {
				label = firstRegistered
			}
			key, err := hsm.GenerateKey(tok.Token, hsm.KeySpec{Label: label, Bits: 2048})
			if err != nil {
				t.Fatal(err)
			}
			kid, err := selfservice.Thumbprint(key.Public)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				rw.firstKID = kid
			}
			keys[kid] = key.Public
		}
		return keys
	}
	rw.World = mptest.New(t, opts)
	return rw
}

// serveRotating serves a daemon whose environment signs with the first
// registered key, its self-service tokens with the eSeal, and rotates as
// rotation says (the YAML mapping's inside); the policy lets the test's
// caller ask for a rotation.
func (rw *rotationWorld) serveRotating(t *testing.T, rotation string) *env {
	e := rw.prepareRotating(t, rotation)
	e.serve(t)
	return e
}

// prepareRotating is serveRotating's configuration and policy, with any
// further edits, not yet served.
func (rw *rotationWorld) prepareRotating(t *testing.T, rotation string, edits ...func(string) string) *env {
	e := prepare(t, rw.World)
	e.edit(t, append([]func(string) string{func(cfg string) string {
		return mustReplace(t, cfg, "key_label: eseal}", fmt.Sprintf("key_label: %s, kid: %s, self_service: {url: %q, key_label: eseal}, rotation: {%s}}",
			firstRegistered, rw.firstKID, rw.Issuer+mpsim.SelfServicePath, rotation))
	}}, edits...)...)
	e.writePolicy(t, defaultPolicy()+"      - environments: [sim]\n        scopes: ["+mpsim.ScopeDCRRead+", "+mpsim.ScopeDCRModify+"]\n")
	return e
}

// steadyLoad keeps callers asking for tokens of rotating resources, so
// that grants are signed all along (tokens expire, resources come back),
// and counts every call that fails.
type steadyLoad struct {
	stop     context.CancelFunc
	wg       sync.WaitGroup
	calls    atomic.Int64
	mu       sync.Mutex
	failures []error
}

// startSteadyLoad starts workers callers on each of apis (replicas r0,
// r1… when there are several).
func startSteadyLoad(t *testing.T, workers int, apis ...portvaktv1.TokenServiceClient) *steadyLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &steadyLoad{stop: cancel}
	for r, api := range apis {
		for worker := range workers {
			l.wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					callCtx, done := context.WithTimeout(context.Background(), 30*time.Second)
					_, err := api.GetToken(callCtx, &portvaktv1.GetTokenRequest{
						Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: fmt.Sprintf("https://api.example/r%d/%d/%d", r, worker, i%25),
					})
					done()
					l.calls.Add(1)
					if err != nil {
						l.mu.Lock()
						l.failures = append(l.failures, fmt.Errorf("r%d: %w", r, err))
						l.mu.Unlock()
					}
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
	}
	t.Cleanup(l.halt)
	return l
}

func (l *steadyLoad) halt() { l.stop(); l.wg.Wait() }

// check halts the load and fails the test for every failed call.
func (l *steadyLoad) check(t *testing.T) {
	t.Helper()
	l.halt()
	t.Logf("calls under load: %d, failed: %d", l.calls.Load(), len(l.failures))
	for i, err := range l.failures {
		if i < 5 {
			t.Errorf("a call failed: %s: %v", status.Code(err), err)
		}
	}
}

// rotatedFrom reports whether r shows a rotation away from the key old
// finished: another key signs, and none is on its way in or out.
func rotatedFrom(r *portvaktv1.KeyRotation, old string) bool {
	return r.GetCurrentKid() != old && r.GetNextKid() == "" && r.GetPreviousKid() == ""
}

// rotationOf is the environment's rotation as ListKeys shows it.
func rotationOf(t *testing.T, keys portvaktv1.KeyServiceClient) *portvaktv1.KeyRotation {
	t.Helper()
	resp, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"})
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	return resp.GetRotation()
}

// waitLong is waitFor for the minutes a rotation takes.
func waitLong(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within) // a hang guard, not a speed claim
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rotationSteps are a whole rotation's key records, in order.
var rotationSteps = []string{"created", "registering", "registered", "accepted", "switched", "unregistering", "unregistered", "deleting", "deleted"}

// TestRotationUnderLoad is issue 15's first "done when": a rotation,
// asked for with `keys rotate` (RotateKey), under continuous load
// through the daemon, with the simulator accepting the new key 5 s after
// its registration. No call fails; every grant the audit log has before
// the switch names the old kid and every one after it the new kid (the
// rotation's own probes aside); the old key leaves the JWKS only after
// the last token it got has expired, and then the HSM; every step has its
// record, in order.
func TestRotationUnderLoad(t *testing.T) {
	rw := newRotationWorld(t, 5*time.Second, 3*time.Second)
	e := rw.serveRotating(t, "key_label_prefix: rot, probe_interval: 500ms, delete_after: 1s, max_token_lifetime: 4s")
	keys := portvaktv1.NewKeyServiceClient(connOf(t, e))
	if r := rotationOf(t, keys); r.GetCurrentKid() != rw.firstKID || r.GetNextKid() != "" {
		t.Fatalf("before the rotation: %v; want kid %s signing and none on its way", r, rw.firstKID)
	}
	load := startSteadyLoad(t, 4, e.unix.API())
	waitFor(t, "calls before the rotation", func() bool { return load.calls.Load() > 100 })

	resp, err := keys.RotateKey(t.Context(), &portvaktv1.RotateKeyRequest{Environment: "sim"})
	if err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	if !resp.GetRotation().GetRequested() && resp.GetRotation().GetNextKid() == "" {
		t.Fatalf("RotateKey answered %v: the rotation is neither asked for nor begun", resp.GetRotation())
	}
	var last *portvaktv1.KeyRotation
	waitLong(t, "the rotation to finish", 2*time.Minute, func() bool {
		last = rotationOf(t, keys)
		return rotatedFrom(last, rw.firstKID)
	})
	newKID := last.GetCurrentKid()
	if last.GetFailures() != 0 {
		t.Errorf("the rotation had %d failed steps; the latest: %s", last.GetFailures(), last.GetLastError())
	}
	waitFor(t, "calls after the rotation", func() bool { return load.calls.Load() > 100 })
	load.check(t)

	listed, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(listed.GetKeys()); n != 1 || listed.GetKeys()[0].GetKid() != newKID || !listed.GetSigningKeyRegistered() {
		t.Errorf("the JWKS after the rotation: %v; want the new key %s alone, in use", listed.GetKeys(), newKID)
	}
	for _, k := range listed.GetTokenKeys() {
		switch {
		case k.GetLabel() == firstRegistered:
			t.Errorf("ListKeys shows the old key %s on the token after the rotation deleted it", firstRegistered)
		case k.GetThumbprint() == newKID && (!k.GetInUse() || k.GetRegisteredKid() != newKID):
			t.Errorf("ListKeys shows the new key on the token as %v; want it in use and registered", k)
		}
	}
	e.stop()

	records := auditOf(t, e)
	steps := map[string]audit.Record{}
	var order []string
	for _, r := range records {
		if r.Kind != audit.KindKey {
			continue
		}
		if slices.Contains(r.Identities, "internal:key-rotation") && r.Client == "portvakt" {
			order = append(order, r.Outcome)
			steps[r.Outcome] = r
		}
	}
	if !slices.Equal(order, rotationSteps) {
		t.Fatalf("the rotation's key records: %v; want %v", order, rotationSteps)
	}
	for _, step := range rotationSteps[:5] {
		if r := steps[step]; r.KID != newKID || !strings.HasPrefix(r.KeyLabel, "rot-") {
			t.Errorf("record %q names kid %s, key %q; want the new key %s, labelled rot-…", step, r.KID, r.KeyLabel, newKID)
		}
	}
	for _, step := range rotationSteps[5:] {
		if r := steps[step]; r.KID != rw.firstKID || r.KeyLabel != firstRegistered {
			t.Errorf("record %q names kid %s, key %q; want the old key %s (%s)", step, r.KID, r.KeyLabel, rw.firstKID, firstRegistered)
		}
	}

	switched := steps["switched"].Seq
	byJTI := map[string]string{} // grant → kid
	var before, after int
	for _, r := range records {
		if r.Kind != audit.KindSignature || r.Environment != "sim" || len(r.Scopes) != 1 || r.Scopes[0] != mptest.ScopeOwn {
			continue // the self-service tokens' grants (the eSeal's), and the probes
		}
		byJTI[r.GrantJTI] = r.KID
		switch {
		case r.Seq < switched && r.KID == rw.firstKID:
			before++
		case r.Seq > switched && r.KID == newKID:
			after++
		default:
			t.Errorf("signature record %d (grant %s) names kid %s, %s the switch (record %d)", r.Seq, r.GrantJTI, r.KID, map[bool]string{true: "before", false: "after"}[r.Seq < switched], switched)
		}
	}
	if before == 0 || after == 0 {
		t.Fatalf("grants before the switch: %d, after: %d; the load must span it", before, after)
	}
	var lastOld time.Time
	for _, r := range records {
		// Issued on a miss, or handed out from the cache (a background
		// refresh's token is on record only so).
		if r.TokenExpiry != nil && byJTI[r.GrantJTI] == rw.firstKID && r.TokenExpiry.After(lastOld) {
			lastOld = *r.TokenExpiry
		}
	}
	if out := steps["unregistering"].Time; !out.After(lastOld) {
		t.Errorf("the old key was taken out of the JWKS at %s, before the last token it got expired (%s)", out.Format(time.RFC3339Nano), lastOld.Format(time.RFC3339Nano))
	}
	t.Logf("grants before the switch: %d, after: %d; the old key's last token expired %s, it left the JWKS %s later",
		before, after, lastOld.Format(time.RFC3339Nano), steps["unregistering"].Time.Sub(lastOld).Round(time.Millisecond))

	inv, err := hsm.List(rw.Token.Token)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range inv.Keys {
		if k.Label == firstRegistered {
			t.Errorf("the old key %s is still in the HSM after the rotation deleted it", firstRegistered)
		}
	}
	if _, ok := rsaOf(t, inv, steps["created"].KeyLabel); !ok {
		t.Errorf("the new key %s is not in the HSM", steps["created"].KeyLabel)
	}
}

// rsaOf finds the key labelled label in inv.
func rsaOf(t *testing.T, inv hsm.Inventory, label string) (*rsa.PublicKey, bool) {
	t.Helper()
	for _, k := range inv.Keys {
		if k.Label == label {
			return k.Public, k.Public != nil
		}
	}
	return nil, false
}

// TestRotationSelfServiceDown is issue 15's second "done when": Digdir's
// self-service API is down when a rotation is asked for. The key in use
// stays in use and no call fails; each failed attempt is on record and
// counted, and the next follows a back-off; once the API is back the
// rotation resumes and completes.
func TestRotationSelfServiceDown(t *testing.T) {
	rw := newRotationWorld(t, time.Second, 3*time.Second)
	e := rw.serveRotating(t, "probe_interval: 200ms, delete_after: 1s, max_token_lifetime: 4s")
	keys := portvaktv1.NewKeyServiceClient(connOf(t, e))
	load := startSteadyLoad(t, 4, e.unix.API())
	waitFor(t, "calls before the outage", func() bool { return load.calls.Load() > 50 })

	rw.Sim.SetFaults(mpsim.Faults{SelfServiceDown: true})
	if _, err := keys.RotateKey(t.Context(), &portvaktv1.RotateKeyRequest{Environment: "sim"}); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	families := func() map[string]*dto.MetricFamily {
		return scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	}
	waitLong(t, "two failed attempts", time.Minute, func() bool {
		got, _ := value(families(), "portvakt_key_rotation_failures_total", map[string]string{"environment": "sim"})
		return got >= 2
	})
	// ListKeys reads the JWKS, so it is down as well; ListEnvironments
	// and the metrics show the rotation meanwhile.
	if got, _ := value(families(), "portvakt_key_rotation_in_progress", map[string]string{"environment": "sim"}); got != 1 {
		t.Errorf("portvakt_key_rotation_in_progress = %v during the outage, want 1", got)
	}
	envs, err := e.unix.API().ListEnvironments(t.Context(), &portvaktv1.ListEnvironmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r := envs.GetEnvironments()[0].GetRotation(); r.GetCurrentKid() != rw.firstKID || r.GetNextKid() == "" || r.GetNextRegistered() || r.GetFailures() < 2 ||
		!strings.Contains(r.GetLastError(), "self-service API is unavailable") {
		t.Errorf("ListEnvironments during the outage shows the rotation as %v; want the first key signing, the new one made and not registered, the failures and why", r)
	}
	before := load.calls.Load()
	waitFor(t, "calls during the outage", func() bool { return load.calls.Load() > before+50 })
	rw.Sim.SetFaults(mpsim.Faults{})

	var last *portvaktv1.KeyRotation
	waitLong(t, "the rotation to complete after the outage", 2*time.Minute, func() bool {
		last = rotationOf(t, keys)
		return rotatedFrom(last, rw.firstKID)
	})
	// The failures are the outage's (their records are checked below);
	// the latest need not be: SoftHSM2 can refuse a write of the state
	// with CKR_GENERAL_ERROR while other tests in this process change
	// their tokens, a failed step retried like any other.
	if last.GetFailures() < 2 {
		t.Errorf("the rotation reports %d failures (the latest %q); want the outage's, at least 2", last.GetFailures(), last.GetLastError())
	}
	load.check(t)
	e.stop()

	var order []string
	unavailable := 0
	switched := uint64(0)
	for _, r := range auditOf(t, e) {
		switch {
		case r.Kind == audit.KindKey && r.Outcome == "self_service_unavailable":
			unavailable++
			if !strings.HasPrefix(r.Error, "registering: ") {
				t.Errorf("a failure record's error %q; want it to begin with the step (registering: )", r.Error)
			}
		case r.Kind == audit.KindKey:
			order = append(order, r.Outcome)
			if r.Error != "" {
				t.Logf("record %d: %s: %s", r.Seq, r.Outcome, r.Error)
			}
			if r.Outcome == "switched" {
				switched = r.Seq
			}
		case r.Kind == audit.KindSignature && switched == 0 && len(r.Scopes) == 1 && r.Scopes[0] == mptest.ScopeOwn && r.KID != rw.firstKID:
			t.Errorf("signature record %d names kid %s before the switch; the key in use must stay until then", r.Seq, r.KID)
		}
	}
	if unavailable < 2 {
		t.Errorf("%d failure records (self_service_unavailable); want one per failed attempt, at least 2", unavailable)
	}
	if !slices.Equal(order, rotationSteps) {
		t.Errorf("the rotation's key records: %v; want %v", order, rotationSteps)
	}
}

// TestRotationFullJWKS: with Digdir's 5 keys registered already, a
// rotation makes its key but does not register it: the failure says to
// remove a key, the JWKS never holds more than 5, the key in use signs
// on. Once a key is removed, the rotation completes.
func TestRotationFullJWKS(t *testing.T) {
	rw := newRotationWorldWith(t, mptest.Options{TokenLifetime: 3 * time.Second}, 4)
	e := rw.serveRotating(t, "probe_interval: 200ms, delete_after: 1s, max_token_lifetime: 4s")
	keys := portvaktv1.NewKeyServiceClient(connOf(t, e))
	if _, err := keys.RotateKey(t.Context(), &portvaktv1.RotateKeyRequest{Environment: "sim"}); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	// The failure looked for is the full set's. Another may come first
	// and is retried like it: SoftHSM2 can refuse a write of the
	// rotation's state with CKR_GENERAL_ERROR while another process or
	// test changes a token (CI saw it once), which is a failed step, on
	// record and tried again, not the one this test is about.
	var r *portvaktv1.KeyRotation
	lastLogged := ""
	waitLong(t, "the rotation to find the JWKS full", time.Minute, func() bool {
		r = rotationOf(t, keys)
		if e := r.GetLastError(); e != "" && e != lastLogged && !strings.Contains(e, "holds 5 keys already") {
			t.Logf("a failure other than the full set's, to be retried: %s", e)
			lastLogged = e
		}
		return strings.Contains(r.GetLastError(), "holds 5 keys already")
	})
	if !strings.Contains(r.GetLastError(), "remove one") {
		t.Errorf("the failure: %q; want it to say to remove a key", r.GetLastError())
	}
	if r.GetCurrentKid() != rw.firstKID || r.GetNextKid() == "" || r.GetNextRegistered() {
		t.Errorf("after the failure: %v; want the first key signing, the new one made and not registered", r)
	}
	listed, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"})
	if err != nil || len(listed.GetKeys()) != 5 {
		t.Fatalf("the JWKS: %v, %v; want its 5 keys", listed.GetKeys(), err)
	}
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: "https://api.example/full"}); err != nil {
		t.Errorf("a token while the rotation waits for room: %v", err)
	}

	// The operator removes a key no longer in use.
	admin, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mpsim.ScopeDCRModify}, Environment: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	api, err := selfservice.New(rw.Issuer+mpsim.SelfServicePath, func(context.Context) (secret.Value, error) { return secret.New(admin.GetAccessToken()) }, selfservice.Options{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := api.Keys(t.Context(), mptest.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	var keep []selfservice.JWK
	dropped := false
	for _, k := range set.Keys { // all but one of the keys not in use
		if !dropped && k.Kid != rw.firstKID {
			dropped = true
			continue
		}
		keep = append(keep, k)
	}
	if _, err := api.Replace(t.Context(), mptest.ClientID, keep); err != nil {
		t.Fatalf("removing a key: %v", err)
	}
	waitLong(t, "the rotation to complete once there is room", 2*time.Minute, func() bool {
		r = rotationOf(t, keys)
		return rotatedFrom(r, rw.firstKID)
	})
	if listed, err = keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"}); err != nil || len(listed.GetKeys()) != 4 {
		t.Errorf("the JWKS after the rotation: %v, %v; want 4 keys (3 kept, the new one; the first removed)", listed.GetKeys(), err)
	}
}

// TestRegisterKeyKIDCollision: a key whose kid another integration has
// registered is refused by Digdir, and the daemon says so clearly
// (FAILED_PRECONDITION, the kid, what to do); the set is unchanged.
func TestRegisterKeyKIDCollision(t *testing.T) {
	var sharedKID string
	w := mptest.New(t, mptest.Options{NoSigner: true, OtherClientKeys: func(t testing.TB, tok softhsmtest.Token) map[string]crypto.PublicKey {
		key, err := hsm.GenerateKey(tok.Token, hsm.KeySpec{Label: "shared", Bits: 2048})
		if err != nil {
			t.Fatal(err)
		}
		if sharedKID, err = selfservice.Thumbprint(key.Public); err != nil {
			t.Fatal(err)
		}
		return map[string]crypto.PublicKey{sharedKID: key.Public}
	}})
	e := prepare(t, w)
	e.edit(t, func(cfg string) string {
		return mustReplace(t, cfg, "key_label: eseal}", fmt.Sprintf("key_label: eseal, self_service: {url: %q}}", w.Issuer+mpsim.SelfServicePath))
	})
	e.writePolicy(t, defaultPolicy()+"      - environments: [sim]\n        scopes: ["+mpsim.ScopeDCRRead+", "+mpsim.ScopeDCRModify+"]\n")
	e.serve(t)
	keys := portvaktv1.NewKeyServiceClient(connOf(t, e))
	_, err := keys.RegisterKey(t.Context(), &portvaktv1.RegisterKeyRequest{Environment: "sim", KeyLabel: "shared"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), sharedKID) || !strings.Contains(err.Error(), "in use by another integration") {
		t.Fatalf("registering a key whose kid another integration holds: %v; want FAILED_PRECONDITION naming the kid as in use by another integration", err)
	}
	listed, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"})
	if err != nil || len(listed.GetKeys()) != 0 {
		t.Errorf("the set after the refusal: %v, %v; want it unchanged (empty)", listed.GetKeys(), err)
	}
}

// TestAutomaticRotationAndRestart: with rotation.auto, a key whose
// registration ends within lead_time is rotated without anyone asking,
// and the metrics show the key's expiry and the next rotation. The
// daemon restarted after the configured key was rotated out (and deleted
// from the HSM) signs with the key its rotation state names.
func TestAutomaticRotationAndRestart(t *testing.T) {
	// Keys registered through the API live 60 s; a rotation begins 45 s
	// before that, so 15 s after a key's registration: after the rotation
	// that registered it has finished (its old key out of the JWKS 2 s
	// and the margin after the switch, out of the HSM 1 s later).
	rw := newRotationWorldWith(t, mptest.Options{TokenLifetime: 2 * time.Second, RegisteredKeyLifetime: 60 * time.Second}, 0)
	e := rw.serveRotating(t, "auto: true, lead_time: 45s, probe_interval: 200ms, delete_after: 1s, max_token_lifetime: 3s")
	keys := portvaktv1.NewKeyServiceClient(connOf(t, e))
	// The first key is a fixture without an expiry: nothing is due, and
	// no rotation is planned.
	if r := rotationOf(t, keys); r.GetNextRotation() != nil || r.GetCurrentExpires() != nil {
		t.Errorf("before any rotation: %v; want no expiry known and none planned", r)
	}
	if _, err := keys.RotateKey(t.Context(), &portvaktv1.RotateKeyRequest{Environment: "sim"}); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	var first string
	waitLong(t, "the first rotation", 2*time.Minute, func() bool {
		r := rotationOf(t, keys)
		first = r.GetCurrentKid()
		return first != rw.firstKID && r.GetPreviousKid() == "" && r.GetNextKid() == ""
	})
	// The key now signing expires in 60 s: the next rotation is planned,
	// and begins by itself.
	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	labels := map[string]string{"environment": "sim"}
	expiry, okExpiry := value(families, "portvakt_registered_key_expiry_timestamp_seconds", labels)
	next, okNext := value(families, "portvakt_key_rotation_next_timestamp_seconds", labels)
	created, okCreated := value(families, "portvakt_registered_key_created_timestamp_seconds", labels)
	if !okExpiry || !okNext || !okCreated || expiry-next != 45 || created > expiry {
		t.Errorf("metrics after the first rotation: expiry %v (%v), next rotation %v (%v), created %v (%v); want all three, the next rotation 45 s before the expiry",
			expiry, okExpiry, next, okNext, created, okCreated)
	}
	var second string
	waitLong(t, "the automatic rotation", 2*time.Minute, func() bool {
		r := rotationOf(t, keys)
		second = r.GetCurrentKid()
		return second != first && r.GetPreviousKid() == "" && r.GetNextKid() == ""
	})
	e.stop()
	var requested int
	for _, r := range auditOf(t, e) {
		if r.Kind == audit.KindDecision && r.Method == portvaktv1.KeyService_RotateKey_FullMethodName {
			requested++
		}
	}
	if requested != 1 {
		t.Errorf("%d RotateKey calls on record; want the one the test made (the second rotation is automatic)", requested)
	}

	// The configured key (registered-0) is gone from the HSM; the daemon
	// starts on the key its rotation state names.
	e.serve(t)
	keys = portvaktv1.NewKeyServiceClient(connOf(t, e))
	r := rotationOf(t, keys)
	if r.GetCurrentKid() == rw.firstKID {
		t.Fatalf("after the restart the rotation names the configured key %s again", rw.firstKID)
	}
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: "https://api.example/restarted"}); err != nil {
		t.Fatalf("a token after the restart: %v", err)
	}
	e.stop()
	var lastKID string
	for _, rec := range auditOf(t, e) {
		if rec.Kind == audit.KindSignature && rec.Resource == "https://api.example/restarted" {
			lastKID = rec.KID
		}
	}
	if lastKID == "" || lastKID == rw.firstKID {
		t.Errorf("the grant after the restart names kid %q; want the rotated key's", lastKID)
	}
}

// TestRotationKeepsKeyInUse: a rotated-out key that something else
// signs with (here the eSeal, which signs the self-service API's tokens
// too) leaves the JWKS but stays in the HSM, on record as kept; the
// self-service API's tokens go on being got with it.
func TestRotationKeepsKeyInUse(t *testing.T) {
	const esealKID = "eseal-registered"
	w := mptest.New(t, mptest.Options{NoSigner: true, ESealKID: esealKID, TokenLifetime: 2 * time.Second})
	e := prepare(t, w)
	e.edit(t, func(cfg string) string {
		return mustReplace(t, cfg, "key_label: eseal}", fmt.Sprintf("key_label: eseal, kid: %s, self_service: {url: %q, key_label: eseal}, rotation: {probe_interval: 200ms, delete_after: 1s, max_token_lifetime: 3s}}",
			esealKID, w.Issuer+mpsim.SelfServicePath))
	})
	e.writePolicy(t, defaultPolicy()+"      - environments: [sim]\n        scopes: ["+mpsim.ScopeDCRRead+", "+mpsim.ScopeDCRModify+"]\n")
	e.serve(t)
	keys := portvaktv1.NewKeyServiceClient(connOf(t, e))
	if _, err := keys.RotateKey(t.Context(), &portvaktv1.RotateKeyRequest{Environment: "sim"}); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	waitLong(t, "the rotation to finish", 2*time.Minute, func() bool {
		r := rotationOf(t, keys)
		return rotatedFrom(r, esealKID)
	})
	listed, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"})
	if err != nil {
		t.Fatalf("ListKeys after the rotation (a self-service token signed by the eSeal): %v", err)
	}
	if !slices.ContainsFunc(listed.GetTokenKeys(), func(k *portvaktv1.TokenKey) bool { return k.GetLabel() == "eseal" }) {
		t.Errorf("the eSeal is gone from the HSM: %v", listed.GetTokenKeys())
	}
	e.stop()
	var order []string
	for _, r := range auditOf(t, e) {
		if r.Kind == audit.KindKey && r.Client == "portvakt" {
			order = append(order, r.Outcome)
		}
	}
	want := append(slices.Clone(rotationSteps[:len(rotationSteps)-1]), "kept")
	if !slices.Equal(order, want) {
		t.Errorf("the rotation's key records: %v; want %v", order, want)
	}
}

// TestRotationAcrossReplicas: two `portvakt serve` processes, replicas r0
// and r1, sign with the same registered key on one token served by
// `p11-kit server`. A rotation asked of r0 is driven by r0; r1 follows the
// state on the HSM and switches to the new key within a probe interval of
// r0, before the old key leaves the JWKS. Neither replica fails a call.
func TestRotationAcrossReplicas(t *testing.T) {
	rw := newRotationWorld(t, time.Second, 3*time.Second)
	procs := rw.startReplicas(t, 2)
	load := startSteadyLoad(t, 1, procs[0].api, procs[1].api)
	waitFor(t, "calls to both replicas", func() bool { return load.calls.Load() > 100 })

	r0 := dial(t, client.Options{Socket: procs[0].socket})
	r1 := dial(t, client.Options{Socket: procs[1].socket})
	if _, err := r0.Keys().RotateKey(t.Context(), &portvaktv1.RotateKeyRequest{Environment: "sim"}); err != nil {
		t.Fatalf("RotateKey of r0: %v", err)
	}
	var newKID string
	waitLong(t, "r0's rotation to finish", 2*time.Minute, func() bool {
		r := rotationAt(t, r0)
		newKID = r.GetCurrentKid()
		return rotatedFrom(r, rw.firstKID)
	})
	if r := rotationAt(t, r1); r.GetCurrentKid() != newKID {
		t.Errorf("r1 signs with kid %s after r0's rotation; want %s", r.GetCurrentKid(), newKID)
	}
	before := load.calls.Load()
	waitFor(t, "calls after the rotation", func() bool { return load.calls.Load() > before+100 })
	load.check(t)
	for _, p := range procs {
		stopProcess(t, p)
	}
}

// startReplicas starts n `portvakt serve` processes, replicas r0…, each
// with its own configuration and audit log, on the world's token served
// by `p11-kit server`, rotating as the replica tests do.
func (rw *rotationWorld) startReplicas(t *testing.T, n int) []*process {
	srv := p11kittest.Start(t, rw.Token)
	var procs []*process
	for i := range n {
		e := rw.prepareRotating(t, "probe_interval: 300ms, delete_after: 1s, max_token_lifetime: 4s",
			withModule(t, rw.World, srv.ClientModule(), ""),
			func(cfg string) string {
				return mustReplace(t, cfg, "audit: {file: audit/audit.log}", fmt.Sprintf("audit: {file: audit/audit.log, instance: r%d}", i))
			})
		procs = append(procs, startProcess(t, e, 0))
	}
	return procs
}

// rotationAt is the rotation as c's ListEnvironments shows it.
func rotationAt(t *testing.T, c *client.Client) *portvaktv1.KeyRotation {
	t.Helper()
	envs, err := c.API().ListEnvironments(t.Context(), &portvaktv1.ListEnvironmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return envs.GetEnvironments()[0].GetRotation()
}

// TestRotationDriverLost: the replica driving a rotation is killed while
// Maskinporten does not yet accept the new key (a pod replaced in a
// rollout, never to come back under its name). The other replica, finding
// the state silent for ten probe intervals, takes the rotation over and
// completes it.
func TestRotationDriverLost(t *testing.T) {
	rw := newRotationWorld(t, 4*time.Second, 3*time.Second)
	procs := rw.startReplicas(t, 2)
	r0 := dial(t, client.Options{Socket: procs[0].socket})
	r1 := dial(t, client.Options{Socket: procs[1].socket})
	if _, err := r0.Keys().RotateKey(t.Context(), &portvaktv1.RotateKeyRequest{Environment: "sim"}); err != nil {
		t.Fatalf("RotateKey of r0: %v", err)
	}
	waitFor(t, "r1 to see the new key registered", func() bool { return rotationAt(t, r1).GetNextRegistered() })
	if err := procs[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = procs[0].cmd.Wait()
	var r *portvaktv1.KeyRotation
	waitLong(t, "r1 to take over and finish the rotation", 2*time.Minute, func() bool {
		r = rotationAt(t, r1)
		return rotatedFrom(r, rw.firstKID)
	})
	if _, err := r1.API().GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: "https://api.example/after"}); err != nil {
		t.Errorf("r1 after the rotation it finished: %v", err)
	}
	stopProcess(t, procs[1])
}

// TestRotationProbesAreOnRecord: a rotation's probes of its new key are
// on record as a caller's request is, each with its decision, its
// signature and Maskinporten's answer: refused (MP-100) while the key is
// not yet known, then a token, which is thrown away and not counted as
// handed out. No signature's grant is left without its fate.
func TestRotationProbesAreOnRecord(t *testing.T) {
	rw := newRotationWorld(t, time.Second, 3*time.Second)
	e := rw.serveRotating(t, "probe_interval: 200ms, delete_after: 1s, max_token_lifetime: 3s")
	keys := portvaktv1.NewKeyServiceClient(connOf(t, e))
	if _, err := keys.RotateKey(t.Context(), &portvaktv1.RotateKeyRequest{Environment: "sim"}); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	var newKID string
	waitLong(t, "the rotation to finish", 2*time.Minute, func() bool {
		r := rotationOf(t, keys)
		newKID = r.GetCurrentKid()
		return rotatedFrom(r, rw.firstKID)
	})
	handedOut, _ := value(scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics"), "portvakt_tokens_total", map[string]string{"environment": "sim", "kind": "own"})
	e.stop()

	records := auditOf(t, e)
	probes := map[string]bool{} // request ids of the probes' signatures
	for _, r := range records {
		if r.Kind == audit.KindSignature && r.KID == newKID && r.Client == "portvakt" {
			probes[r.RequestID] = true
		}
	}
	if len(probes) < 2 {
		t.Fatalf("%d probes of the new key on record; want the refused ones and the accepted one", len(probes))
	}
	refused, issued := 0, 0
	for id := range probes {
		var kinds []string
		for _, r := range records {
			if r.RequestID != id || r.Kind == audit.KindKey { // the step's own record, for the accepted one
				continue
			}
			kinds = append(kinds, r.Kind)
			if r.Kind == audit.KindOutcome {
				switch {
				case r.Outcome == "issued":
					issued++
				case r.MPCode == "MP-100":
					refused++
				default:
					t.Errorf("probe %s: outcome %q (%s), want issued or refused with MP-100", id, r.Outcome, r.Error)
				}
			}
		}
		if want := []string{audit.KindDecision, audit.KindSignature, audit.KindOutcome}; !slices.Equal(kinds, want) {
			t.Errorf("probe %s's records: %v; want %v", id, kinds, want)
		}
	}
	if issued != 1 || refused < 1 {
		t.Errorf("the probes' outcomes: %d issued, %d refused with MP-100; want 1 issued after at least one refusal", issued, refused)
	}
	// Tokens handed out: the self-service API's (got or from the
	// cache), none of the probes'.
	own := 0
	for _, r := range records {
		got := r.Kind == audit.KindOutcome && r.Outcome == "issued"
		cached := r.Kind == audit.KindDecision && r.Outcome == "cached"
		if (got || cached) && !probes[r.RequestID] {
			own++
		}
	}
	if int(handedOut) != own {
		t.Errorf("%v tokens counted as handed out; want the %d that were not probes'", handedOut, own)
	}
}
