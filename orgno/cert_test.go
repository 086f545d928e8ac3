package orgno

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"strings"
	"testing"
)

func TestFromCertificate(t *testing.T) {
	orgID := func(v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: OIDOrganizationIdentifier, Value: v}
	}
	serial := func(v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: OIDSerialNumber, Value: v}
	}
	cn := pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "Portvakt test"}

	tests := []struct {
		name    string
		names   []pkix.AttributeTypeAndValue
		want    Number
		wantErr error
		errText string
	}{
		{name: "organizationIdentifier", names: []pkix.AttributeTypeAndValue{cn, orgID("NTRNO-991825827")}, want: "991825827"},
		{name: "legacy serialNumber", names: []pkix.AttributeTypeAndValue{cn, serial("974760673")}, want: "974760673"},
		{
			name:  "organizationIdentifier wins over serialNumber",
			names: []pkix.AttributeTypeAndValue{serial("974760673"), orgID("NTRNO-991825827")},
			want:  "991825827",
		},
		{
			name:  "non-Norwegian organizationIdentifier falls back to serialNumber",
			names: []pkix.AttributeTypeAndValue{orgID("VATSE-556677889901"), serial("971526920")},
			want:  "971526920",
		},
		{
			name:    "neither present",
			names:   []pkix.AttributeTypeAndValue{cn},
			wantErr: ErrNoNumber,
			errText: "carries no organisation number (organizationIdentifier NTRNO-… or serialNumber)",
		},
		{
			name:    "invalid organizationIdentifier is not silently skipped",
			names:   []pkix.AttributeTypeAndValue{orgID("NTRNO-991825828"), serial("974760673")},
			wantErr: ErrInvalid,
			errText: "check digit is 8, want 7",
		},
		{
			name:    "invalid serialNumber",
			names:   []pkix.AttributeTypeAndValue{serial("SN-12345")},
			wantErr: ErrInvalid,
			errText: `serialNumber "SN-12345"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := &x509.Certificate{Subject: pkix.Name{Names: tt.names}}
			got, err := FromCertificate(cert)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("FromCertificate() error = %v", err)
				}
				if got != tt.want {
					t.Fatalf("FromCertificate() = %q, want %q", got, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FromCertificate() error = %v, want it to wrap %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("FromCertificate() error = %q, want it to contain %q", err, tt.errText)
			}
			if !strings.HasPrefix(err.Error(), "certificate subject ") {
				t.Errorf("FromCertificate() error = %q, want it to start with %q", err, "certificate subject ")
			}
		})
	}
}

// TestFromNameUnencoded covers a pkix.Name built by hand, where the
// attributes live in ExtraNames and SerialNumber rather than Names.
func TestFromNameUnencoded(t *testing.T) {
	tests := []struct {
		name string
		in   pkix.Name
		want Number
	}{
		{
			name: "ExtraNames",
			in:   pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: OIDOrganizationIdentifier, Value: "NTRNO-974760673"}}},
			want: "974760673",
		},
		{name: "SerialNumber field", in: pkix.Name{SerialNumber: "991825827"}, want: "991825827"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromName(tt.in)
			if err != nil {
				t.Fatalf("FromName() error = %v", err)
			}
			if got != tt.want {
				t.Fatalf("FromName() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFromCertificateNil(t *testing.T) {
	if _, err := FromCertificate(nil); err == nil {
		t.Fatal("FromCertificate(nil) error = nil, want error")
	}
}
