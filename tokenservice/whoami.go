package tokenservice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/requestid"
	"github.com/portvakt/portvakt/orgno"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// WhoAmI tells a caller how the daemon sees it and what it may ask for.
func (s *Service) WhoAmI(ctx context.Context, _ *portvaktv1.WhoAmIRequest) (*portvaktv1.WhoAmIResponse, error) {
	caller, err := identity.FromContext(ctx)
	resp := &portvaktv1.WhoAmIResponse{Transport: caller.Transport, Identities: caller.Identities}
	if err != nil {
		return resp, nil // an unidentified caller may still learn that it is one
	}
	pol := s.policies.Current()
	client, _, ok := pol.ClientOf(caller.Identities)
	if !ok {
		return resp, nil
	}
	resp.Client = client
	requestid.SetClient(ctx, client)
	for _, g := range pol.Grants(client) {
		resp.Grants = append(resp.Grants, &portvaktv1.Grant{
			Environments: g.Environments, Scopes: g.Scopes, ConsumerOrgs: g.ConsumerOrgs, SystemUsers: g.SystemUsers, Rule: g.Rule,
		})
	}
	return resp, nil
}

// ListEnvironments is the operator's view of what the daemon serves: no
// secrets, only what identifies the integration and the certificate.
func (s *Service) ListEnvironments(ctx context.Context, _ *portvaktv1.ListEnvironmentsRequest) (*portvaktv1.ListEnvironmentsResponse, error) {
	if _, err := identity.FromContext(ctx); err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	resp := &portvaktv1.ListEnvironmentsResponse{}
	for _, name := range s.envNames {
		env := s.envs[name]
		endpoint := env.Config.TokenEndpoint
		if env.Discovery {
			// The endpoint in use; discovery falls back to the configured one.
			if found, err := s.discovery.TokenEndpoint(ctx, env.Config); err == nil {
				endpoint = found
			}
		}
		// The successor first: Succeed switches signing before it
		// withdraws the successor, so read in this order the two never
		// show the old certificate with no successor waiting.
		next := env.Successor()
		key := env.Signing()
		e := &portvaktv1.Environment{
			Name:            name,
			Issuer:          env.Config.Issuer,
			TokenEndpoint:   endpoint,
			ClientId:        env.ClientID,
			DefaultResource: env.Config.Resource,
			KeyLabel:        key.Signer.KeyLabel(),
		}
		if cert := key.Signer.Certificate(); cert != nil {
			sum := sha256.Sum256(cert.Raw)
			number, _ := orgno.FromCertificate(cert)
			e.CertificateSubject = eseal.Describe(cert.Subject)
			e.OrgNumber = number.String()
			e.CertificateNotAfter = timestamppb.New(cert.NotAfter)
			e.CertificateSha256 = hex.EncodeToString(sum[:])
		} else {
			// A key registered by kid alone: no certificate, no org number.
			e.CertificateSubject = NoCertificate(key.Builder.KeyID())
		}
		if next != nil && next.Key != key {
			if cert := next.Key.Signer.Certificate(); cert != nil {
				sum := sha256.Sum256(cert.Raw)
				e.Successor = &portvaktv1.Successor{
					TakesOverAt:         timestamppb.New(next.At),
					CertificateSubject:  eseal.Describe(cert.Subject),
					CertificateNotAfter: timestamppb.New(cert.NotAfter),
					CertificateSha256:   hex.EncodeToString(sum[:]),
					KeyLabel:            next.Key.Signer.KeyLabel(),
				}
			}
		}
		if env.Rotation != nil {
			e.Rotation = describeRotation(env.Rotation.Status())
		}
		resp.Environments = append(resp.Environments, e)
	}
	return resp, nil
}

// NoCertificate is shown where a certificate would be, for an environment
// whose grants carry only a registered key's kid.
func NoCertificate(kid string) string { return "no certificate: registered key " + kid }
