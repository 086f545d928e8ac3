// Package eseal describes the subject of a Norwegian enterprise certificate
// (virksomhetssertifikat, an eSeal) as Buypass and Commfides issue it: the
// enterprise's name, its organisation number and the country.
//
// Both a certificate request for a real CA (`portvakt hsm csr`) and the
// development CA use it, so the two cannot drift apart.
package eseal

import (
	"crypto/x509/pkix"
	"errors"
	"fmt"

	"github.com/portvakt/portvakt/orgno"
)

// Subject describes the enterprise an eSeal is issued to.
type Subject struct {
	// OrgNumber is the enterprise's organisation number.
	OrgNumber orgno.Number
	// Organization is the enterprise's registered name (O).
	Organization string
	// CommonName is the certificate's CN. If empty, Organization is used,
	// as issuers commonly do for eSeals.
	CommonName string
	// LegacySerialNumber puts the organisation number in serialNumber, as
	// older Norwegian enterprise certificates do, instead of in
	// organizationIdentifier as "NTRNO-<orgno>". Use it to test code that
	// must accept both.
	LegacySerialNumber bool
}

// Validate says what is missing or wrong in s.
func (s Subject) Validate() error {
	// OrgNumber is a string type, so it may have been converted rather than
	// parsed: check it before it goes into a certificate or request.
	if _, err := orgno.Parse(s.OrgNumber.String()); err != nil {
		return fmt.Errorf("eSeal subject: %w", err)
	}
	if s.Organization == "" {
		return errors.New("eSeal subject has no organisation name; give the enterprise's registered name")
	}
	return nil
}

// Name returns the certificate subject for s. The country is always NO.
// The organisation number goes into ExtraNames (not Names) because
// crypto/x509 ignores Names when encoding a subject.
func (s Subject) Name() pkix.Name {
	cn := s.CommonName
	if cn == "" {
		cn = s.Organization
	}
	name := pkix.Name{
		CommonName:   cn,
		Organization: []string{s.Organization},
		Country:      []string{"NO"},
	}
	if s.LegacySerialNumber {
		name.SerialNumber = s.OrgNumber.String()
	} else {
		name.ExtraNames = []pkix.AttributeTypeAndValue{{
			Type:  orgno.OIDOrganizationIdentifier,
			Value: orgno.NTRPrefix + s.OrgNumber.String(),
		}}
	}
	return name
}

// Describe renders a certificate subject for people. pkix.Name.String
// prints organizationIdentifier, which Go does not know by name, as hex
// DER; here it is spelled out.
func Describe(name pkix.Name) string {
	var orgIDs []string
	plain := name
	plain.Names, plain.ExtraNames = nil, nil
	for _, atv := range name.Names {
		if atv.Type.Equal(orgno.OIDOrganizationIdentifier) {
			orgIDs = append(orgIDs, fmt.Sprint(atv.Value))
		}
	}
	s := plain.String()
	for _, id := range orgIDs {
		s += ",organizationIdentifier=" + id
	}
	return s
}
