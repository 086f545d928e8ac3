package syntax

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestCheckIdentity(t *testing.T) {
	valid := []string{
		"spiffe://portvakt.test/ns/billing/sa/api",
		"https://billing.internal/",
		"dns:billing.internal",
		"dns:localhost",
		"cn:billing-service",
		"cn:Billing Service AS",
		"uid:0",
		"uid:1000",
		"gid:4294967295",
		"spiffe://portvakt.test/" + strings.Repeat("a", MaxIdentityBytes-len("spiffe://portvakt.test/")),
	}
	for _, id := range valid {
		if err := CheckIdentity(id); err != nil {
			t.Errorf("CheckIdentity(%q) = %v", id, err)
		}
	}
	invalid := []string{
		"", "billing", "uid=1000", "ui:1000", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
		"uid:", "uid:01000", "uid:+1", "uid:-1", "uid:4294967296", "uid:1000 ", "gid:x",
		"dns:", "dns:*.internal", "dns:Billing.internal", "dns:billing..internal", "dns:billing.internal.",
		"dns:-billing.internal", "dns:billing_x.internal", "dns:bill ing",
		"cn:", "cn: billing", "cn:billing\n", "cn:\xff",
		"spiffe://", "spiffe:///path", "SPIFFE://portvakt.test/x", "https://billing.internal/a b",
		"uid://1000", "dns://billing.internal", "https://billing.internal/\x00",
		// Longer than a caller the daemon takes may have.
		"spiffe://portvakt.test/" + strings.Repeat("a", MaxIdentityBytes+1-len("spiffe://portvakt.test/")),
		"cn:" + strings.Repeat("a", MaxIdentityBytes),
	}
	for _, id := range invalid {
		if err := CheckIdentity(id); err == nil {
			t.Errorf("CheckIdentity(%q) accepted it", id)
		}
	}
}

func TestIdentityConstructors(t *testing.T) {
	if got := UnixPeerIdentities(1000, 2000); !slices.Equal(got, []string{"uid:1000", "gid:2000"}) {
		t.Errorf("UnixPeerIdentities = %q", got)
	}
	if got := DNSIdentity("Billing.Internal"); got != "dns:billing.internal" {
		t.Errorf("DNSIdentity = %q", got)
	}
	if got := CNIdentity("billing-service"); got != "cn:billing-service" {
		t.Errorf("CNIdentity = %q", got)
	}
	// A URI SAN that could pose as a Unix peer or another kind of
	// identity is no identity at all.
	for _, raw := range []string{"uid:0", "gid:0", "dns:billing.internal", "cn:billing-service", "urn:x:y", "uid://0"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if id, ok := URIIdentity(u); ok {
			t.Errorf("URIIdentity(%q) = %q, true", raw, id)
		}
	}
	u, _ := url.Parse("spiffe://portvakt.test/ns/billing/sa/api")
	if id, ok := URIIdentity(u); !ok || id != "spiffe://portvakt.test/ns/billing/sa/api" {
		t.Errorf("URIIdentity(spiffe) = %q, %v", id, ok)
	}
	if _, ok := URIIdentity(nil); ok {
		t.Error("URIIdentity(nil) = true")
	}
	// The Kelvin sign folds to k under Unicode rules, not under DNS's.
	if got := CanonicalIdentity("dns:\u212aey.internal"); got == "dns:key.internal" {
		t.Errorf("CanonicalIdentity folded a non-ASCII letter: %q", got)
	}
}
