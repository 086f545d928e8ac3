package orgno

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// OIDOrganizationIdentifier is the X.520 organizationIdentifier attribute
// (2.5.4.97). Newer Norwegian eSeals carry the organisation number here as
// "NTRNO-<orgno>", following ETSI EN 319 412-1.
var OIDOrganizationIdentifier = asn1.ObjectIdentifier{2, 5, 4, 97}

// OIDSerialNumber is the X.520 serialNumber attribute (2.5.4.5). Older
// Norwegian enterprise certificates carry the plain nine-digit organisation
// number here.
var OIDSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}

// NTRPrefix is the ETSI EN 319 412-1 prefix for a legal person identified by
// a national trade register ("NTR") in Norway ("NO").
const NTRPrefix = "NTRNO-"

// ErrNoNumber is wrapped by FromName and FromCertificate when the subject
// carries no organisation number at all, as opposed to carrying an invalid
// one (which wraps ErrInvalid).
var ErrNoNumber = errors.New("no organisation number")

// FromName extracts and validates the organisation number in a certificate
// or CSR subject. organizationIdentifier with the NTRNO- prefix wins over
// serialNumber, because on eSeals that carry both the serialNumber may be an
// issuer-specific value rather than the organisation number.
//
// FromName looks at name.Names (the attributes as parsed), so it works on
// subjects from parsed certificates and CSRs. A pkix.Name built by hand for
// encoding has its attributes in ExtraNames and SerialNumber instead; those
// are consulted too so the result does not depend on how the Name was made.
func FromName(name pkix.Name) (Number, error) {
	attrs := make([]pkix.AttributeTypeAndValue, 0, len(name.Names)+len(name.ExtraNames)+1)
	attrs = append(attrs, name.Names...)
	attrs = append(attrs, name.ExtraNames...)
	if name.SerialNumber != "" {
		attrs = append(attrs, pkix.AttributeTypeAndValue{Type: OIDSerialNumber, Value: name.SerialNumber})
	}

	for _, a := range attrs {
		v, ok := a.Value.(string)
		if !ok || !a.Type.Equal(OIDOrganizationIdentifier) || !strings.HasPrefix(v, NTRPrefix) {
			continue
		}
		n, err := Parse(strings.TrimPrefix(v, NTRPrefix))
		if err != nil {
			return "", fmt.Errorf("subject %q: organizationIdentifier %q: %w", name, v, err)
		}
		return n, nil
	}
	for _, a := range attrs {
		v, ok := a.Value.(string)
		if !ok || !a.Type.Equal(OIDSerialNumber) {
			continue
		}
		n, err := Parse(v)
		if err != nil {
			return "", fmt.Errorf("subject %q: serialNumber %q: %w", name, v, err)
		}
		return n, nil
	}
	return "", fmt.Errorf("subject %q carries %w (organizationIdentifier %s… or serialNumber)",
		name, ErrNoNumber, NTRPrefix)
}

// FromCertificate extracts and validates the organisation number in cert's
// subject; see FromName for the rules.
func FromCertificate(cert *x509.Certificate) (Number, error) {
	if cert == nil {
		return "", errors.New("orgno: nil certificate")
	}
	n, err := FromName(cert.Subject)
	if err != nil {
		return "", fmt.Errorf("certificate %w", err)
	}
	return n, nil
}
