package mpsim

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// selfServiceSim is a simulator whose demo client may have the
// self-service scopes, on a clock the test moves.
func selfServiceSim(t *testing.T, mutate func(*Config)) (*sim, *time.Time) {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	s := startSim(t, func(c *Config) {
		c.Clients[0].Scopes = append(c.Clients[0].Scopes, ScopeDCRRead, ScopeDCRModify)
		c.Clients[1].Scopes = append(c.Clients[1].Scopes, ScopeDCRRead, ScopeDCRModify)
		if mutate != nil {
			mutate(c)
		}
	})
	s.SetClock(func() time.Time { return now })
	return s, &now
}

// adminToken is an access token for scope, from an x5c grant of client.
func (s *sim) adminToken(t *testing.T, client, scope string, now time.Time) string {
	t.Helper()
	r := s.post(t, grantSpec{now: now, issuer: s.url, edit: func(_, c map[string]any) {
		c["iss"], c["scope"] = client, scope
	}}.build(t))
	if r.status != 200 {
		t.Fatalf("token for %s: %d %s %s", scope, r.status, r.mp, r.message)
	}
	return r.token.AccessToken
}

// jwksCall is one self-service request: the status, the decoded set or
// the error's description.
type jwksCall struct {
	status int
	doc    jwksDocument
	desc   string
}

func (s *sim) jwks(t *testing.T, method, client, token string, body any) jwksCall {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+SelfServicePath+"clients/"+client+"/jwks", rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	c := jwksCall{status: resp.StatusCode}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(data, &c.doc); err != nil {
			t.Fatalf("decoding %s: %v", data, err)
		}
		return c
	}
	var eb errorBody
	if err := json.Unmarshal(data, &eb); err != nil {
		t.Fatalf("decoding error %s: %v", data, err)
	}
	c.desc = eb.ErrorDescription
	return c
}

func newJWK(t *testing.T, kid string) (JWK, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	n, e := rsaParams(&key.PublicKey)
	return JWK{Kty: "RSA", Kid: kid, Use: "sig", Alg: "RS256", N: n, E: e}, key
}

func set(keys ...JWK) map[string]any { return map[string]any{"keys": keys} }

func kids(doc jwksDocument) []string {
	var out []string
	for _, k := range doc.Keys {
		out = append(out, k.Kid)
	}
	return out
}

// TestSelfServiceKeyLifecycle: a key registered through the self-service
// API is refused in grants until the activation delay has passed, then
// accepted until a year after its registration (MP-121 after), and posting
// the set again keeps its registration. The set is replaced whole.
func TestSelfServiceKeyLifecycle(t *testing.T) {
	const delay = 5 * time.Second
	s, now := selfServiceSim(t, func(c *Config) { c.KeyActivationDelay = delay })
	token := s.adminToken(t, clientID, ScopeDCRRead+" "+ScopeDCRModify, *now)

	got := s.jwks(t, http.MethodGet, clientID, token, nil)
	if got.status != 200 || strings.Join(kids(got.doc), ",") != demoKID || got.doc.Keys[0].Exp != 0 {
		t.Fatalf("GET: %+v, want the configured key %s alone, with no exp", got, demoKID)
	}
	current := got.doc.Keys[0]
	next, nextKey := newJWK(t, "next-2026")
	put := s.jwks(t, http.MethodPost, clientID, token, set(current, next))
	if put.status != 200 || strings.Join(kids(put.doc), ",") != demoKID+",next-2026" {
		t.Fatalf("POST: %+v", put)
	}
	wantExp := now.Add(DefaultRegisteredKeyLifetime).Unix()
	if exp := put.doc.Keys[1].Exp; exp != wantExp {
		t.Errorf("the new key's exp %d, want %d (a year from its registration)", exp, wantExp)
	}
	if put.doc.LastUpdated != now.UTC().Format(time.RFC3339) {
		t.Errorf("last_updated %q, want %s", put.doc.LastUpdated, now.UTC().Format(time.RFC3339))
	}

	grantWith := func(at time.Time) result {
		return s.post(t, grantSpec{now: at, issuer: s.url, key: nextKey, edit: func(h, _ map[string]any) {
			delete(h, "x5c")
			h["kid"] = "next-2026"
		}}.build(t))
	}
	if r := grantWith(*now); r.status != 400 || r.mp != CodeClientNotFound {
		t.Errorf("a grant with the new kid at once: %d %s %q, want MP-100 until the delay has passed", r.status, r.mp, r.message)
	}
	*now = now.Add(delay)
	if r := grantWith(*now); r.status != 200 {
		t.Errorf("a grant with the new kid after the delay: %d %s %q", r.status, r.mp, r.message)
	}

	// Posted again a day later, the key keeps its year.
	*now = now.Add(24 * time.Hour)
	token = s.adminToken(t, clientID, ScopeDCRModify, *now)
	again := s.jwks(t, http.MethodPut, clientID, token, set(put.doc.Keys...))
	if again.status != 200 || again.doc.Keys[1].Exp != wantExp {
		t.Errorf("PUT of the same set: %+v, want exp still %d", again, wantExp)
	}
	// Replacing the set with the new key alone removes the old one.
	only := s.jwks(t, http.MethodPost, clientID, token, set(next))
	if only.status != 200 || strings.Join(kids(only.doc), ",") != "next-2026" {
		t.Fatalf("POST of the new key alone: %+v", only)
	}
	old := s.post(t, grantSpec{now: *now, issuer: s.url, key: getFixture(t).kidKey, edit: func(h, _ map[string]any) {
		delete(h, "x5c")
		h["kid"] = demoKID
	}}.build(t))
	if old.status != 400 || old.mp != CodeClientNotFound {
		t.Errorf("a grant with the removed kid: %d %s, want MP-100", old.status, old.mp)
	}

	*now = time.Unix(wantExp, 0)
	if r := grantWith(*now); r.status != 400 || r.mp != CodeExpiredKey || !strings.Contains(r.message, "Expired key") {
		t.Errorf("a grant with the key a year on: %d %s %q, want MP-121 Expired key", r.status, r.mp, r.message)
	}
}

// TestSelfServiceRefusesBadSets: a set Digdir would refuse is refused
// with what to fix, and the set before stays as it was.
func TestSelfServiceRefusesBadSets(t *testing.T) {
	s, now := selfServiceSim(t, nil)
	token := s.adminToken(t, clientID, ScopeDCRModify, *now)
	otherToken := s.adminTokenFor(t, otherClientID, *now)
	mine, _ := newJWK(t, "mine")
	if r := s.jwks(t, http.MethodPost, clientID, token, set(mine)); r.status != 200 {
		t.Fatalf("registering: %+v", r)
	}
	theirs, _ := newJWK(t, "theirs")
	if r := s.jwks(t, http.MethodPost, otherClientID, otherToken, set(theirs)); r.status != 200 {
		t.Fatalf("registering the other integration's key: %+v", r)
	}
	six := make([]JWK, 6)
	for i := range six {
		six[i], _ = newJWK(t, fmt.Sprintf("k%d", i))
	}
	reused, _ := newJWK(t, "mine") // a new key under a kid in use
	ec := mine
	ec.Kty, ec.Kid = "EC", "ec"
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	n, e := rsaParams(&small.PublicKey)
	weak := JWK{Kty: "RSA", Kid: "weak", N: n, E: e}
	es := mine
	es.Kid, es.Alg = "es", "ES256"
	for _, tc := range []struct {
		name string
		body any
		want string
	}{
		{"six keys", set(six...), "at most 5"},
		{"a kid twice", set(mine, mine), `kid "mine" appears twice`},
		{"another integration's kid", set(mine, JWK{Kty: "RSA", Kid: "theirs", N: mine.N, E: mine.E}), `kid "theirs" is in use by another integration`},
		{"a kid in use for another key", set(reused), `kid "mine" is registered for another key`},
		{"an EC key", set(ec), `kty "EC"`},
		{"RSA-1024", set(weak), "1024 bits"},
		{"alg ES256", set(es), `alg "ES256"`},
		{"no kid", set(JWK{Kty: "RSA", N: mine.N, E: mine.E}), "no kid"},
		{"not a JWKS", map[string]any{"key": []JWK{mine}}, "not a JWKS"},
		{"x5c of a key not the JWK's", set(withX5C(t, mine)), "certifies another key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.jwks(t, http.MethodPost, clientID, token, tc.body)
			if r.status != 400 || !strings.Contains(r.desc, tc.want) {
				t.Fatalf("got %d %q, want 400 with %q", r.status, r.desc, tc.want)
			}
			if after := s.jwks(t, http.MethodGet, clientID, token, nil); strings.Join(kids(after.doc), ",") != "mine" {
				t.Fatalf("after a refused set the keys are %v, want [mine] as before", kids(after.doc))
			}
		})
	}
}

// withX5C is j pinned to the fixture's eSeal certificate, whose key is
// not j's.
func withX5C(t *testing.T, j JWK) JWK {
	f := getFixture(t)
	j.Kid = "pinned"
	j.X5C = []string{base64.StdEncoding.EncodeToString(f.cert.Raw), base64.StdEncoding.EncodeToString(f.ca.Issuing.Raw)}
	return j
}

// TestSelfServicePinnedKey: a key whose x5c is its own enterprise
// certificate is registered and keeps its chain in the answer.
func TestSelfServicePinnedKey(t *testing.T) {
	f := getFixture(t)
	s, now := selfServiceSim(t, nil)
	token := s.adminToken(t, clientID, ScopeDCRModify, *now)
	n, e := rsaParams(&f.key.PublicKey)
	pinned := JWK{Kty: "RSA", Kid: "eseal", N: n, E: e,
		X5C: []string{base64.StdEncoding.EncodeToString(f.cert.Raw), base64.StdEncoding.EncodeToString(f.ca.Issuing.Raw)}}
	r := s.jwks(t, http.MethodPost, clientID, token, set(pinned))
	if r.status != 200 || len(r.doc.Keys) != 1 || len(r.doc.Keys[0].X5C) != 2 {
		t.Fatalf("POST of a pinned key: %+v", r)
	}
	wrong := pinned
	wrong.X5C = []string{base64.StdEncoding.EncodeToString(f.wrongOrg.Raw), base64.StdEncoding.EncodeToString(f.ca.Issuing.Raw)}
	if r := s.jwks(t, http.MethodPost, clientID, token, set(wrong)); r.status != 400 || !strings.Contains(r.desc, "not the certificate of the integration's organisation") {
		t.Fatalf("a pin to another organisation's certificate: %d %q", r.status, r.desc)
	}
}

// adminTokenFor is otherClientID's self-service token: that client has no
// eSeal of its own in the fixture, so its token is issued by the
// simulator directly, as the token endpoint would for an x5c grant.
func (s *sim) adminTokenFor(t *testing.T, client string, now time.Time) string {
	t.Helper()
	return s.signAccessToken(t, map[string]any{
		"iss": s.Issuer(), "client_id": client, "scope": ScopeDCRRead + " " + ScopeDCRModify,
		"client_amr": AMRCertificate, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	})
}

// signAccessToken is claims signed as this simulator signs its tokens.
func (s *sim) signAccessToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, jwt.MapClaims(claims))
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestSelfServiceAuthorisation: who may read and replace an
// integration's keys.
func TestSelfServiceAuthorisation(t *testing.T) {
	f := getFixture(t)
	s, now := selfServiceSim(t, nil)
	read := s.adminToken(t, clientID, ScopeDCRRead, *now)
	plain := s.adminToken(t, clientID, scopeECOC, *now)
	byKID := s.post(t, grantSpec{now: *now, issuer: s.url, key: f.kidKey, edit: func(h, c map[string]any) {
		delete(h, "x5c")
		h["kid"] = demoKID
		c["scope"] = ScopeDCRModify
	}}.build(t))
	if byKID.status != 200 {
		t.Fatalf("a kid grant: %d %s", byKID.status, byKID.message)
	}
	other := s.adminTokenFor(t, otherClientID, *now)
	expired := s.signAccessToken(t, map[string]any{"iss": s.Issuer(), "client_id": clientID, "scope": ScopeDCRModify,
		"client_amr": AMRCertificate, "iat": now.Add(-time.Hour).Unix(), "exp": now.Add(-time.Minute).Unix()})
	k, _ := newJWK(t, "k")
	for _, tc := range []struct {
		name, method, client, token string
		status                      int
		want                        string
	}{
		{"no token", http.MethodGet, clientID, "", 401, "Authorization: Bearer"},
		{"not a token", http.MethodGet, clientID, "abc.def.ghi", 401, "not a valid access token"},
		{"an expired token", http.MethodGet, clientID, expired, 401, "expired"},
		{"no self-service scope", http.MethodGet, clientID, plain, 403, "do not include"},
		{"read scope, replacing", http.MethodPost, clientID, read, 403, "idporten:dcr.modify or idporten:dcr.write"},
		{"a token from a registered key", http.MethodPost, clientID, byKID.token.AccessToken, 403, "enterprise certificate"},
		{"another organisation's integration", http.MethodGet, clientID, other, 403, "belongs to another organisation"},
		{"no such integration", http.MethodGet, "nobody", read, 404, `No integration "nobody"`},
		{"DELETE", http.MethodDelete, clientID, read, 405, "use GET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.method == http.MethodPost {
				body = set(k)
			}
			r := s.jwks(t, tc.method, tc.client, tc.token, body)
			if r.status != tc.status || !strings.Contains(r.desc, tc.want) {
				t.Fatalf("got %d %q, want %d with %q", r.status, r.desc, tc.status, tc.want)
			}
		})
	}
	if r := s.jwks(t, http.MethodGet, clientID, read, nil); r.status != 200 {
		t.Fatalf("the read scope reading: %+v", r)
	}
	s.SetFaults(Faults{SelfServiceDown: true})
	if r := s.jwks(t, http.MethodGet, clientID, read, nil); r.status != 503 {
		t.Fatalf("with the API down: %+v, want 503", r)
	}
	if st := s.Stats(); st.SelfServiceRequests < 10 || st.JWKSReplaced != 0 {
		t.Errorf("stats %+v: every request counted, no set replaced", st)
	}
}

// TestKIDWithX5C: a grant with a registered key's kid and, beside it, the
// x5c of that key's enterprise certificate is accepted (Maskinporten then
// checks the certificate too), as the daemon's kid_with_x5c sends it; the
// certificate's chain and organisation are checked as for x5c alone.
func TestKIDWithX5C(t *testing.T) {
	f := getFixture(t)
	s := startSim(t, func(c *Config) { c.Clients[0].Keys["eseal-kid"] = &f.key.PublicKey })
	for _, tc := range []struct {
		name   string
		chain  []any
		status int
		mp     string
	}{
		{"the key's own certificate", x5c(f.cert, f.ca.Issuing), 200, ""},
		{"an untrusted chain", x5c(f.untrusted, f.otherCA.Issuing), 400, CodeUntrustedCert},
		{"another organisation's certificate", x5c(f.wrongOrg, f.ca.Issuing), 400, CodeOrgMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.post(t, s.grant(t, func(h, _ map[string]any) { h["kid"], h["x5c"] = "eseal-kid", tc.chain }))
			if r.status != tc.status || r.mp != tc.mp {
				t.Fatalf("got %d %s %q, want %d %s", r.status, r.mp, r.message, tc.status, tc.mp)
			}
			if r.status == 200 {
				if amr := s.verifyAccessToken(t, r.token.AccessToken)["client_amr"]; amr != AMRCertificate {
					t.Errorf("client_amr %v, want %s: the certificate was checked", amr, AMRCertificate)
				}
			}
		})
	}
}
