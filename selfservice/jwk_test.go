package selfservice

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
)

// TestThumbprintRFC7638: the example of RFC 7638 section 3.1.
func TestThumbprintRFC7638(t *testing.T) {
	k := JWK{Kty: "RSA", Kid: "rfc", E: "AQAB",
		N: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
	pub, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(pub)
	if err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("Thumbprint = %q, %v; want RFC 7638's NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", got, err)
	}
}

// TestNewJWK: the registered-key form of a key, its kid the thumbprint,
// pinned to a certificate only if the certificate is the key's.
func TestNewJWK(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)

	j, err := NewJWK(&key.PublicKey, []*x509.Certificate{cert})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := Thumbprint(&key.PublicKey)
	if j.Kid != kid || j.Kty != "RSA" || j.Alg != "RS256" || j.Use != "sig" || len(j.X5C) != 1 {
		t.Errorf("NewJWK = %+v", j)
	}
	if back, err := j.PublicKey(); err != nil || !back.Equal(&key.PublicKey) {
		t.Errorf("the JWK's key is not the key: %v", err)
	}
	if _, err := NewJWK(&other.PublicKey, []*x509.Certificate{cert}); err == nil || !strings.Contains(err.Error(), "is not of key") {
		t.Errorf("NewJWK of another key with the certificate: %v, want a refusal", err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewJWK(&small.PublicKey, nil); err == nil {
		t.Error("NewJWK of an RSA-1024 key: no error")
	}
}

func TestCheckSet(t *testing.T) {
	k := func(kid string) JWK { return JWK{Kid: kid} }
	for _, tc := range []struct {
		name string
		keys []JWK
		want string
	}{
		{"five", []JWK{k("a"), k("b"), k("c"), k("d"), k("e")}, ""},
		{"six", []JWK{k("a"), k("b"), k("c"), k("d"), k("e"), k("f")}, "at most 5"},
		{"a kid twice", []JWK{k("a"), k("a")}, `kid "a" twice`},
		{"no kid", []JWK{k("")}, "has no kid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSet(tc.keys)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("CheckSet = %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseSet(f *testing.F) {
	f.Add([]byte(`{"keys":[],"created":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseSet(data)
		if err != nil {
			return
		}
		for _, k := range set.Keys {
			if k.Kid == "" {
				t.Fatal("a key without kid passed")
			}
			if pub, err := k.PublicKey(); err != nil || pub.N.BitLen() < 2048 {
				t.Fatalf("a key that is not RSA-2048+ passed: %v", err)
			}
		}
	})
}
