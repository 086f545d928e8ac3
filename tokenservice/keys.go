package tokenservice

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/requestid"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/rotation"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/selfservice"
	"github.com/portvakt/portvakt/signer"
)

// KeyService is the gRPC KeyService: an environment's registered keys,
// read and changed at Digdir's self-service API with a token got for the
// caller exactly as GetToken gets one (identity, rate limit, the policy's
// decision for the self-service scopes, the cache, the HSM, the audit).
type KeyService struct {
	portvaktv1.UnimplementedKeyServiceServer
	s    *Service
	http *http.Client
}

// ListKeys reads the environment's set and marks the key in use.
func (k *KeyService) ListKeys(ctx context.Context, req *portvaktv1.ListKeysRequest) (*portvaktv1.ListKeysResponse, error) {
	env, err := k.environment(req.GetEnvironment())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	api, err := k.api(ctx, env, selfservice.ScopeRead)
	if err != nil {
		return nil, err
	}
	set, err := api.Keys(ctx, env.ClientID)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	resp, err := describeKeys(env, set)
	if err != nil {
		return nil, err
	}
	if env.Rotation != nil {
		resp.Rotation = describeRotation(env.Rotation.Status())
	}
	if resp.TokenKeys, err = tokenKeys(env, set); err != nil {
		return nil, toStatus(ctx, err)
	}
	return resp, nil
}

// tokenKeys are the key pairs on the environment's token, each matched to
// the set by its public key.
func tokenKeys(env *Environment, set selfservice.Set) ([]*portvaktv1.TokenKey, error) {
	own := env.Signing()
	keys, err := own.Signer.Token().Keys()
	if err != nil {
		return nil, err
	}
	out := make([]*portvaktv1.TokenKey, 0, len(keys))
	for _, k := range keys {
		tk := &portvaktv1.TokenKey{Label: k.Label, Id: hex.EncodeToString(k.ID)}
		if k.Public != nil {
			tk.Bits = int32(k.Public.N.BitLen())
			tk.Thumbprint, _ = selfservice.Thumbprint(k.Public)
			tk.InUse = samePublic(own, k.Public)
			for _, r := range set.Keys {
				if pub, err := r.PublicKey(); err == nil && pub.Equal(k.Public) {
					tk.RegisteredKid = r.Kid
				}
			}
		}
		out = append(out, tk)
	}
	return out, nil
}

// RotateKey asks the environment's rotation to begin now.
func (k *KeyService) RotateKey(ctx context.Context, req *portvaktv1.RotateKeyRequest) (*portvaktv1.RotateKeyResponse, error) {
	env, err := k.environment(req.GetEnvironment())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	if env.Rotation == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "environment %s has no key rotation: configure environments[].rotation", env.Config.Name)
	}
	// The caller's token for the scopes a rotation uses: the policy's
	// decision that the caller may change the environment's keys, on record.
	if _, err := k.api(ctx, env, selfservice.ScopeRead, selfservice.ScopeModify); err != nil {
		return nil, err
	}
	_, err = env.Rotation.Request()
	switch {
	case errors.Is(err, rotation.ErrBusy):
		return nil, status.Error(codes.Aborted, err.Error()+"; wait for it to finish (`portvakt keys list` shows it)")
	case err != nil:
		return nil, toStatus(ctx, err)
	}
	return &portvaktv1.RotateKeyResponse{Rotation: describeRotation(env.Rotation.Status())}, nil
}

// describeRotation is a rotation's status as KeyService answers it.
func describeRotation(st rotation.Status) *portvaktv1.KeyRotation {
	r := &portvaktv1.KeyRotation{
		CurrentKid: st.State.Current.KID, CurrentKeyLabel: st.State.Current.Label,
		CurrentExpires: timestamp(st.CurrentExpires), NextRotation: timestamp(st.NextRotation),
		Requested: !st.State.Requested.IsZero(), Failures: st.Failures, LastError: st.LastError,
	}
	if n := st.State.Next; n != nil {
		r.NextKid, r.NextKeyLabel, r.NextRegistered = n.KID, n.Label, !n.Registered.IsZero()
	}
	if p := st.State.Previous; p != nil {
		r.PreviousKid, r.PreviousKeyLabel = p.KID, p.Label
		r.PreviousRetireAfter, r.PreviousUnregistered = timestamp(p.RetireAfter), !p.Unregistered.IsZero()
	}
	return r
}

// timestamp is t for a reply; nil (absent) when t is zero.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Bits of a key RegisterKey makes when the request names none.
const defaultKeyBits = selfservice.DefaultKeyBits

// RegisterKey adds a key of the environment's HSM, taken or made, to the
// integration's set, each step on record.
func (k *KeyService) RegisterKey(ctx context.Context, req *portvaktv1.RegisterKeyRequest) (*portvaktv1.RegisterKeyResponse, error) {
	env, err := k.environment(req.GetEnvironment())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	label, bits := req.GetKeyLabel(), int(req.GetBits())
	switch {
	case label == "" || len(label) > 32:
		return nil, toStatus(ctx, &fieldError{field: "key_label", problem: "give the key's label in the HSM, at most 32 characters, such as registered-2027"})
	case bits != 0 && bits != 2048 && bits != 3072:
		return nil, toStatus(ctx, &fieldError{field: "bits", problem: fmt.Sprintf("%d: give 2048 or 3072, or 0 for %d", bits, defaultKeyBits)})
	}
	// The token first: a caller the policy does not allow makes no key.
	api, err := k.api(ctx, env, selfservice.ScopeRead, selfservice.ScopeModify)
	if err != nil {
		return nil, err
	}
	set, err := api.Keys(ctx, env.ClientID)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	tok := env.Signing().Signer.Token()
	key, err := tok.Key(signer.KeyConfig{KeyLabel: label, NoCertificate: !req.GetPinCertificate()})
	switch {
	case errors.Is(err, signer.ErrKeyNotFound) && req.GetPinCertificate():
		return nil, toStatus(ctx, &fieldError{field: "pin_certificate", problem: fmt.Sprintf("the HSM has no key %q with a certificate to pin; import its certificate first, or register it unpinned", label)})
	case err != nil && !errors.Is(err, signer.ErrKeyNotFound):
		return nil, toStatus(ctx, err)
	}
	var jwk selfservice.JWK
	if key != nil {
		if jwk, err = selfservice.NewJWK(key.Public().(*rsa.PublicKey), pinned(key, req.GetPinCertificate())); err != nil {
			return nil, toStatus(ctx, &fieldError{field: "key_label", problem: err.Error()})
		}
		if _, ok := set.Kid(jwk.Kid); ok {
			resp, err := describeKeys(env, set)
			return &portvaktv1.RegisterKeyResponse{Kid: jwk.Kid, Keys: resp}, err
		}
	}
	// Room in the set before a key is made for it.
	if len(set.Keys) >= selfservice.MaxKeys {
		return nil, status.Errorf(codes.FailedPrecondition, "integration %s holds %d keys already, Digdir's most: remove one no longer in use before registering %s", env.ClientID, len(set.Keys), label)
	}
	caller, _ := identity.FromContext(ctx)
	change := KeyChange{Caller: caller, Client: requestid.ClientFrom(ctx), Environment: env.Config.Name, KeyLabel: label, KID: jwk.Kid}
	created := key == nil
	if created {
		if bits == 0 {
			bits = defaultKeyBits
		}
		if key, err = tok.GenerateKey(label, bits); err != nil {
			return nil, toStatus(ctx, err)
		}
		if jwk, err = selfservice.NewJWK(key.Public().(*rsa.PublicKey), nil); err != nil {
			return nil, toStatus(ctx, err)
		}
		change.KID, change.Step = jwk.Kid, KeyCreated
		if err := k.s.recorder.KeyChange(ctx, change); err != nil {
			return nil, k.s.unrecorded(ctx, err)
		}
	}
	change.Step = KeyRegistering
	if err := k.s.recorder.KeyChange(ctx, change); err != nil {
		return nil, k.s.unrecorded(ctx, err)
	}
	set, err = api.Replace(ctx, env.ClientID, append(set.Keys[:len(set.Keys):len(set.Keys)], jwk))
	change.Step, change.Err = KeyRegistered, err
	if err != nil {
		change.Step = Classify(ctx, err).Outcome
	}
	if recErr := k.s.recorder.KeyChange(ctx, change); recErr != nil && err == nil {
		return nil, k.s.unrecorded(ctx, recErr)
	}
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	resp := &portvaktv1.RegisterKeyResponse{Kid: jwk.Kid, Created: created, Registered: true}
	if resp.Keys, err = describeKeys(env, set); err != nil {
		return nil, err
	}
	return resp, nil
}

// environment is the named environment, if it has a self-service API.
func (k *KeyService) environment(name string) (*Environment, error) {
	env := k.s.envs[name]
	switch {
	case env == nil:
		return nil, &fieldError{field: "environment", problem: fmt.Sprintf("unknown environment %q; the daemon serves %v", name, k.s.envNames)}
	case env.SelfServiceURL == "":
		return nil, &fieldError{field: "environment", problem: fmt.Sprintf("environment %q has no self-service API: set its self_service.url", env.Config.Name)}
	}
	return env, nil
}

// api is a client of the environment's self-service API with the
// caller's token for scopes, decided, cached and recorded as any other.
// Its error is already a status.
func (k *KeyService) api(ctx context.Context, env *Environment, scopes ...string) (*selfservice.Client, error) {
	tok, err := k.s.GetToken(ctx, &portvaktv1.GetTokenRequest{Scopes: scopes, Environment: env.Config.Name})
	if err != nil {
		return nil, err
	}
	token := func(context.Context) (secret.Value, error) { return secret.New(tok.GetAccessToken()) }
	api, err := selfservice.New(env.SelfServiceURL, token, selfservice.Options{HTTPClient: k.http})
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return api, nil
}

// describeKeys is set as ListKeys answers it, the key in use marked.
func describeKeys(env *Environment, set selfservice.Set) (*portvaktv1.ListKeysResponse, error) {
	own := env.Signing()
	signing := own.Builder.KeyID()
	if signing == "" {
		var err error
		if signing, err = selfservice.Thumbprint(own.Signer.Public()); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	resp := &portvaktv1.ListKeysResponse{Environment: env.Config.Name, ClientId: env.ClientID, SigningKid: signing}
	if !set.Updated.IsZero() {
		resp.Updated = timestamppb.New(set.Updated)
	}
	for _, key := range set.Keys {
		rk := &portvaktv1.RegisteredKey{Kid: key.Kid, InUse: key.Kid == signing}
		if pub, err := key.PublicKey(); err == nil {
			rk.Bits = int32(pub.N.BitLen())
			rk.InUse = rk.InUse && samePublic(own, pub)
		}
		if exp := key.Expires(); !exp.IsZero() {
			rk.Expires = timestamppb.New(exp)
		}
		if subject, ok := pinnedSubject(key); ok {
			rk.PinnedCertificateSubject = subject
		}
		resp.SigningKeyRegistered = resp.SigningKeyRegistered || rk.InUse
		resp.Keys = append(resp.Keys, rk)
	}
	return resp, nil
}

// pinned is the chain a key is pinned to: its certificates, when asked.
func pinned(key *signer.Signer, pin bool) []*x509.Certificate {
	if !pin {
		return nil
	}
	return key.Chain()
}

// samePublic says whether pub is key's: a kid is in use only if the key
// under it is the one the daemon signs with.
func samePublic(key *SigningKey, pub *rsa.PublicKey) bool {
	own, ok := key.Signer.Public().(*rsa.PublicKey)
	return ok && own.Equal(pub)
}

// pinnedSubject is the subject of the certificate a key's x5c pins it to.
func pinnedSubject(key selfservice.JWK) (string, bool) {
	certs, err := key.Certificates()
	if err != nil || len(certs) == 0 {
		return "", false
	}
	return eseal.Describe(certs[0].Subject), true
}
