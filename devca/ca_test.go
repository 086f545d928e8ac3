package devca

import (
	"bytes"
	"crypto/x509"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()

	tests := []struct {
		name       string
		cert       *x509.Certificate
		cn         string
		validity   time.Duration
		maxPathLen int
		issuer     *x509.Certificate
	}{
		{name: "root", cert: ca.Root, cn: "Portvakt Test Root CA", validity: rootValidity, maxPathLen: 1, issuer: ca.Root},
		{name: "issuing", cert: ca.Issuing, cn: "Portvakt Test Issuing CA", validity: issuingValidity, maxPathLen: 0, issuer: ca.Root},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cert
			if c.Subject.CommonName != tt.cn {
				t.Errorf("CN = %q, want %q", c.Subject.CommonName, tt.cn)
			}
			if got := c.Subject.Organization; len(got) != 1 || got[0] != "Portvakt Test" {
				t.Errorf("O = %q, want [Portvakt Test]", got)
			}
			if got := c.Subject.Country; len(got) != 1 || got[0] != "NO" {
				t.Errorf("C = %q, want [NO]", got)
			}
			if !c.BasicConstraintsValid || !c.IsCA {
				t.Errorf("BasicConstraints valid=%v CA=%v, want both true", c.BasicConstraintsValid, c.IsCA)
			}
			if c.MaxPathLen != tt.maxPathLen || (tt.maxPathLen == 0 && !c.MaxPathLenZero) {
				t.Errorf("MaxPathLen = %d (zero=%v), want %d", c.MaxPathLen, c.MaxPathLenZero, tt.maxPathLen)
			}
			if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; c.KeyUsage != want {
				t.Errorf("KeyUsage = %v, want %v", c.KeyUsage, want)
			}
			if len(c.SubjectKeyId) == 0 {
				t.Error("SubjectKeyId is empty")
			}
			if !bytes.Equal(c.AuthorityKeyId, tt.issuer.SubjectKeyId) {
				t.Errorf("AuthorityKeyId = %x, want issuer's SubjectKeyId %x", c.AuthorityKeyId, tt.issuer.SubjectKeyId)
			}
			if err := c.CheckSignatureFrom(tt.issuer); err != nil {
				t.Errorf("not signed by %s: %v", tt.issuer.Subject.CommonName, err)
			}
			if n := c.SerialNumber.BitLen(); n == 0 || n > 128 {
				t.Errorf("serial number has %d bits, want 1..128", n)
			}
			if c.NotBefore.After(now) {
				t.Errorf("NotBefore %v is in the future", c.NotBefore)
			}
			if d := c.NotAfter.Sub(now); d < tt.validity-time.Hour || d > tt.validity {
				t.Errorf("NotAfter is %v from now, want about %v", d, tt.validity)
			}
		})
	}
	if ca.Root.SerialNumber.Cmp(ca.Issuing.SerialNumber) == 0 {
		t.Error("root and issuing CA share a serial number")
	}
}

func TestNewEmptyName(t *testing.T) {
	if _, err := New(""); err == nil {
		t.Fatal("New(\"\") error = nil, want error")
	}
}

func TestChainAndPool(t *testing.T) {
	ca := newTestCA(t)
	chain := ca.Chain()
	if len(chain) != 2 || chain[0] != ca.Issuing || chain[1] != ca.Root {
		t.Fatalf("Chain() = %v, want [Issuing Root]", chain)
	}
	// Pool must anchor this CA's chain and no other CA's.
	if _, err := ca.Issuing.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("issuing CA does not verify against Pool(): %v", err)
	}
	if _, err := ca.Issuing.Verify(x509.VerifyOptions{Roots: newTestCA(t).Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("issuing CA verifies against another CA's Pool()")
	}
}
