package maskinporten

import (
	"crypto"
	"io"
	"testing"
)

// fixedSigner answers every digest with the same signature: what Build
// costs around the signature (claims, JSON, header, encoding) is then all
// that is measured.
type fixedSigner struct{ softSigner }

func (f fixedSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return make([]byte, 384), nil // an RSA-3072 signature's size
}

// BenchmarkBuildAroundSignature is the cost of a grant beyond its HSM
// signature, on every cold token.
func BenchmarkBuildAroundSignature(b *testing.B) {
	b1, err := NewGrantBuilder(fixedSigner{newSoftSigner(b)}, GrantOptions{})
	if err != nil {
		b.Fatal(err)
	}
	req := GrantRequest{Issuer: "https://test.maskinporten.no/", ClientID: "client", Scopes: []string{"svv:kjoretoy/ecoc"}, ConsumerOrg: "974760673"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := b1.Build(req); err != nil {
			b.Fatal(err)
		}
	}
}
