package tokenservice

import (
	"context"
	"crypto/rsa"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portvakt/portvakt/eseal"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/selfservice"
)

// KeyService is the gRPC KeyService: an environment's registered keys,
// read from Digdir's self-service API with a token got for the caller
// exactly as GetToken gets one (identity, rate limit, the policy's
// decision for idporten:dcr.read, the cache, the HSM, the audit).
type KeyService struct {
	portvaktv1.UnimplementedKeyServiceServer
	s    *Service
	http *http.Client
}

// ListKeys reads the environment's set and marks the key in use.
func (k *KeyService) ListKeys(ctx context.Context, req *portvaktv1.ListKeysRequest) (*portvaktv1.ListKeysResponse, error) {
	env := k.s.envs[req.GetEnvironment()]
	switch {
	case env == nil:
		return nil, toStatus(ctx, &fieldError{field: "environment", problem: fmt.Sprintf("unknown environment %q; the daemon serves %v", req.GetEnvironment(), k.s.envNames)})
	case env.SelfServiceURL == "":
		return nil, toStatus(ctx, &fieldError{field: "environment", problem: fmt.Sprintf("environment %q has no self-service API: set its self_service.url", env.Config.Name)})
	}
	// The caller's token for the read scope, decided, cached and recorded
	// as any other.
	tok, err := k.s.GetToken(ctx, &portvaktv1.GetTokenRequest{Scopes: []string{selfservice.ScopeRead}, Environment: env.Config.Name})
	if err != nil {
		return nil, err
	}
	token := func(context.Context) (secret.Value, error) { return secret.New(tok.GetAccessToken()) }
	api, err := selfservice.New(env.SelfServiceURL, token, selfservice.Options{HTTPClient: k.http})
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	set, err := api.Keys(ctx, env.ClientID)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	own := env.Signing()
	signing := own.Builder.KeyID()
	if signing == "" {
		if signing, err = selfservice.Thumbprint(own.Signer.Public()); err != nil {
			return nil, toStatus(ctx, err)
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
