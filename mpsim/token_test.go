package mpsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// verifyAccessToken checks token against the key published at /jwk and
// returns its claims.
func (s *sim) verifyAccessToken(t *testing.T, token string) jwt.MapClaims {
	t.Helper()
	resp, err := http.Get(s.url + "jwk")
	if err != nil {
		t.Fatalf("GET jwk: %v", err)
	}
	defer resp.Body.Close()
	var set JWKS
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("decoding jwk: %v", err)
	}
	keys := make(map[string]crypto.PublicKey)
	for _, k := range set.Keys {
		keys[k.Kid] = parseJWK(t, k)
	}
	if !reflect.DeepEqual(keys, s.PublicKeys()) {
		t.Errorf("/jwk keys differ from PublicKeys()")
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(token, claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		return keys[kid], nil
	}, jwt.WithValidMethods([]string{s.method.Alg()}), jwt.WithIssuer(s.Issuer()), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("access token does not verify with /jwk: %v", err)
	}
	return claims
}

// parseJWK is the public key a /jwk entry holds, checked against what
// its kty and alg say.
func parseJWK(t *testing.T, k JWK) crypto.PublicKey {
	t.Helper()
	dec := func(v string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(b) == 0 {
			t.Fatalf("JWK %+v: member %q is not base64url", k, v)
		}
		return new(big.Int).SetBytes(b)
	}
	switch {
	case k.Use != "sig":
		t.Fatalf("JWK %+v: use is not sig", k)
	case k.Kty == "RSA" && k.Alg == "RS256":
		return &rsa.PublicKey{N: dec(k.N), E: int(dec(k.E).Int64())}
	case k.Kty == "EC" && k.Alg == "ES256" && k.Crv == "P-256":
		raw := append([]byte{4}, append(dec(k.X).FillBytes(make([]byte, 32)), dec(k.Y).FillBytes(make([]byte, 32))...)...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			t.Fatalf("JWK %+v: %v", k, err)
		}
		return pub
	}
	t.Fatalf("bad JWK %+v", k)
	return nil
}

func orgClaim(n string) map[string]any {
	return map[string]any{"authority": "iso6523-actorid-upis", "ID": "0192:" + n}
}

func TestIssue(t *testing.T) {
	f := getFixture(t)
	tests := []struct {
		name  string
		edit  func(h, c map[string]any)
		key   *rsa.PrivateKey
		scope string
		// want are claims the access token must have with these values;
		// absent lists claims it must not have.
		want   map[string]any
		absent []string
	}{
		{
			name:   "consumer x5c",
			scope:  scopeECOC,
			want:   map[string]any{"client_amr": "virksomhetssertifikat", "consumer": orgClaim("991825827")},
			absent: []string{"aud", "supplier", "delegation_source"},
		},
		{
			name:  "delegated",
			edit:  func(_, c map[string]any) { c["scope"] = scopeDelegert; c["consumer_org"] = "974760673" },
			scope: scopeDelegert,
			want: map[string]any{
				"consumer":          orgClaim("974760673"),
				"supplier":          orgClaim("991825827"),
				"delegation_source": "https://www.altinn.no",
			},
			absent: []string{"aud"},
		},
		{
			name:  "resource becomes aud",
			edit:  func(_, c map[string]any) { c["resource"] = "https://www.utv.vegvesen.no" },
			scope: scopeECOC,
			want:  map[string]any{"aud": "https://www.utv.vegvesen.no"},
		},
		{
			name:  "resource array of one becomes aud",
			edit:  func(_, c map[string]any) { c["resource"] = []any{"https://www.utv.vegvesen.no"} },
			scope: scopeECOC,
			want:  map[string]any{"aud": "https://www.utv.vegvesen.no"},
		},
		{
			name: "kid client",
			edit: func(h, _ map[string]any) {
				delete(h, "x5c")
				h["kid"] = demoKID
			},
			key:    f.kidKey,
			scope:  scopeECOC,
			want:   map[string]any{"client_amr": "private_key_jwt", "consumer": orgClaim("991825827")},
			absent: []string{"supplier"},
		},
		{
			name:  "two scopes RS512",
			edit:  func(h, c map[string]any) { h["alg"] = "RS512"; c["scope"] = scopeECOC + " " + scopeDelegert },
			scope: scopeECOC + " " + scopeDelegert,
		},
		{
			name:  "RS384 with root in x5c",
			edit:  func(h, _ map[string]any) { h["alg"] = "RS384"; h["x5c"] = x5c(f.cert, f.ca.Issuing, f.ca.Root) },
			scope: scopeECOC,
		},
		{
			name:  "legacy serialNumber certificate",
			edit:  func(h, _ map[string]any) { h["x5c"] = x5c(f.legacy, f.ca.Issuing) },
			scope: scopeECOC,
		},
	}
	s := startSim(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := grantSpec{now: time.Now(), issuer: s.url, key: tt.key, edit: tt.edit}.build(t)
			r := s.post(t, g)
			if r.status != http.StatusOK {
				t.Fatalf("status %d %s %s: %s, want 200", r.status, r.err, r.mp, r.message)
			}
			if r.token.TokenType != "Bearer" || r.token.ExpiresIn != 120 || r.token.Scope != tt.scope {
				t.Errorf("response %+v, want Bearer, 120 s, scope %q", r.token, tt.scope)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			claims := s.verifyAccessToken(t, r.token.AccessToken)
			iat, _ := claims["iat"].(float64)
			exp, _ := claims["exp"].(float64)
			if exp-iat != 120 || time.Since(time.Unix(int64(iat), 0)).Abs() > time.Minute {
				t.Errorf("iat %v exp %v: want iat now and a lifetime of 120 s", iat, exp)
			}
			if _, err := uuid.Parse(claims["jti"].(string)); err != nil {
				t.Errorf("jti %v is not a UUID", claims["jti"])
			}
			base := map[string]any{
				"iss": s.url, "client_id": clientID, "scope": tt.scope, "token_type": "Bearer",
				"client_amr": "virksomhetssertifikat", "consumer": orgClaim("991825827"),
			}
			for k, v := range tt.want {
				base[k] = v
			}
			for k, v := range base {
				if !reflect.DeepEqual(claims[k], v) {
					t.Errorf("claim %s = %#v, want %#v", k, claims[k], v)
				}
			}
			for _, k := range tt.absent {
				if v, ok := claims[k]; ok {
					t.Errorf("claim %s = %#v, want absent", k, v)
				}
			}
		})
	}
	if st := s.Stats(); st.Issued != len(tests) || st.TokenRequests != len(tests) || len(st.Refused) != 0 {
		t.Errorf("stats %+v, want %d issued and nothing refused", st, len(tests))
	}
}

// TestRefusals walks the checks in order: each case breaks one rule of an
// otherwise valid grant.
func TestRefusals(t *testing.T) {
	f := getFixture(t)
	setClaim := func(k string, v any) func(h, c map[string]any) {
		return func(_, c map[string]any) { c[k] = v }
	}
	useKID := func(kid string) func(h, c map[string]any) {
		return func(h, _ map[string]any) { delete(h, "x5c"); h["kid"] = kid }
	}
	tests := []struct {
		name string
		// Exactly one of request, spec and assertion says what to send.
		request   func(s *sim) *http.Request
		spec      func(s *sim) grantSpec
		assertion string
		edit      func(h, c map[string]any)

		status  int
		err, mp string
		msg     string // a substring of the message
	}{
		// 1. The request.
		{name: "GET", request: func(s *sim) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, s.url+"token", nil)
			return r
		}, status: 405, err: "invalid_request", mp: "MP-011", msg: "Invalid request: method GET"},
		{name: "JSON body", request: func(s *sim) *http.Request {
			r, _ := http.NewRequest(http.MethodPost, s.url+"token", strings.NewReader(`{}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}, status: 400, err: "invalid_request", mp: "MP-011", msg: "Content-Type"},
		{name: "body too large", request: func(s *sim) *http.Request {
			return formRequest(s, "grant_type="+GrantType+"&assertion="+strings.Repeat("a", 64<<10))
		}, status: 400, err: "invalid_request", mp: "MP-011", msg: "larger than"},
		{name: "wrong grant_type", request: func(s *sim) *http.Request {
			return formRequest(s, "grant_type=client_credentials&assertion=x")
		}, status: 400, err: "invalid_request", mp: "MP-011", msg: "grant_type"},
		{name: "no assertion", request: func(s *sim) *http.Request {
			return formRequest(s, "grant_type="+GrantType)
		}, status: 400, err: "invalid_request", mp: "MP-011", msg: "assertion is missing"},
		{name: "repeated parameter", request: func(s *sim) *http.Request {
			return formRequest(s, "grant_type="+GrantType+"&grant_type="+GrantType+"&assertion=x")
		}, status: 400, err: "invalid_request", mp: "MP-011", msg: "given 2 times"},
		{name: "parameters in URL", request: func(s *sim) *http.Request {
			r := formRequest(s, tokenForm("x"))
			r.URL.RawQuery = "assertion=x"
			return r
		}, status: 400, err: "invalid_request", mp: "MP-011", msg: "URL query"},

		// 3. The header.
		{name: "not a JWT", assertion: "not.a-jwt", status: 400, err: "invalid_grant", mp: "MP-011", msg: "Not a compact JWS"},
		{name: "alg HS256", edit: func(h, _ map[string]any) { h["alg"] = "HS256" },
			status: 400, err: "invalid_grant", mp: "MP-011", msg: "Unsupported alg"},
		{name: "alg none", edit: func(h, _ map[string]any) { h["alg"] = "none" },
			status: 400, err: "invalid_grant", mp: "MP-011", msg: "Unsupported alg"},
		{name: "alg PS256", edit: func(h, _ map[string]any) { h["alg"] = "PS256" },
			status: 400, err: "invalid_grant", mp: "MP-011", msg: "Unsupported alg"},
		{name: "alg unknown", edit: func(h, _ map[string]any) { h["alg"] = "XX999" },
			status: 400, err: "invalid_grant", mp: "MP-011", msg: "Unsupported alg"},
		{name: "x5c beside the kid of another key", edit: func(h, _ map[string]any) { h["kid"] = demoKID },
			status: 400, err: "invalid_grant", mp: "MP-123", msg: "x5c[0] certifies another key than the registered key"},
		{name: "neither x5c nor kid", edit: func(h, _ map[string]any) { delete(h, "x5c") },
			status: 400, err: "invalid_grant", mp: "MP-011", msg: "The header must carry x5c or kid"},

		// 4. x5c and kid.
		{name: "x5c base64url", edit: func(h, _ map[string]any) {
			h["x5c"] = []any{base64.RawURLEncoding.EncodeToString(f.cert.Raw), base64.StdEncoding.EncodeToString(f.ca.Issuing.Raw)}
		}, status: 400, err: "invalid_grant", mp: "MP-123", msg: "Client authentication failed. Invalid x5c: x5c[0] is base64url"},
		{name: "x5c not a certificate", edit: func(h, _ map[string]any) { h["x5c"] = []any{"AAAA"} },
			status: 400, err: "invalid_grant", mp: "MP-123", msg: "Invalid x5c"},
		{name: "x5c a string", edit: func(h, _ map[string]any) { h["x5c"] = base64.StdEncoding.EncodeToString(f.cert.Raw) },
			status: 400, err: "invalid_grant", mp: "MP-123", msg: "Invalid x5c"},
		{name: "x5c empty", edit: func(h, _ map[string]any) { h["x5c"] = []any{} },
			status: 400, err: "invalid_grant", mp: "MP-123", msg: "Invalid x5c"},
		{name: "x5c out of order", edit: func(h, _ map[string]any) { h["x5c"] = x5c(f.cert, f.ca.Root, f.ca.Issuing) },
			status: 400, err: "invalid_grant", mp: "MP-123", msg: "x5c[0] is not signed by x5c[1]"},
		{name: "x5c untrusted CA", edit: func(h, _ map[string]any) { h["x5c"] = x5c(f.untrusted, f.otherCA.Issuing) },
			status: 400, err: "invalid_grant", mp: "MP-120", msg: "Signed with an invalid certificate"},
		{name: "x5c without intermediate", edit: func(h, _ map[string]any) { h["x5c"] = x5c(f.cert) },
			status: 400, err: "invalid_grant", mp: "MP-120", msg: "Signed with an invalid certificate"},
		{name: "certificate expired", spec: func(s *sim) grantSpec {
			now := f.shortLived.NotAfter.Add(time.Minute)
			s.SetClock(func() time.Time { return now })
			return grantSpec{now: now, issuer: s.url, edit: func(h, _ map[string]any) { h["x5c"] = x5c(f.shortLived, f.ca.Issuing) }}
		}, status: 400, err: "invalid_grant", mp: "MP-121", msg: "Expired key: certificate x5c[0] has expired"},
		{name: "certificate not yet valid", spec: func(s *sim) grantSpec {
			now := f.cert.NotBefore.Add(-time.Minute)
			s.SetClock(func() time.Time { return now })
			return grantSpec{now: now, issuer: s.url}
		}, status: 400, err: "invalid_grant", mp: "MP-121", msg: "is not yet valid"},
		{name: "kid unknown", edit: useKID("nope"),
			status: 400, err: "invalid_grant", mp: "MP-100", msg: `kid "nope" is not registered`},
		{name: "kid of unknown client", edit: func(h, c map[string]any) { useKID(demoKID)(h, c); c["iss"] = "nobody" },
			status: 400, err: "invalid_grant", mp: "MP-100", msg: "Client not found"},
		{name: "kid of other client", edit: func(h, c map[string]any) { useKID(demoKID)(h, c); c["iss"] = otherClientID },
			status: 400, err: "invalid_grant", mp: "MP-100", msg: "not registered"},

		// 5. Signature.
		{name: "signed by another key", spec: func(s *sim) grantSpec {
			return grantSpec{now: time.Now(), issuer: s.url, key: f.otherKey}
		}, status: 400, err: "invalid_grant", mp: "MP-124", msg: "Client authentication failed. Invalid signature"},
		{name: "alg differs from signature", spec: func(s *sim) grantSpec {
			return grantSpec{now: time.Now(), issuer: s.url, signAlg: "RS256", edit: func(h, _ map[string]any) { h["alg"] = "RS384" }}
		}, status: 400, err: "invalid_grant", mp: "MP-124", msg: "Invalid signature"},
		{name: "kid signed by another key", spec: func(s *sim) grantSpec {
			return grantSpec{now: time.Now(), issuer: s.url, key: f.otherKey, edit: useKID(demoKID)}
		}, status: 400, err: "invalid_grant", mp: "MP-124", msg: "Invalid signature"},

		// 6. Claims.
		{name: "unknown claims", edit: func(_, c map[string]any) { c["sub"] = "x"; c["nbf"] = 1 },
			status: 400, err: "invalid_request", mp: "MP-011", msg: "Invalid assertion. Unknown claim(s): nbf, sub"},
		{name: "no jti", edit: func(_, c map[string]any) { delete(c, "jti") },
			status: 400, err: "invalid_request", mp: "MP-011", msg: "Missing claim(s): jti"},
		{name: "no aud and no scope", edit: func(_, c map[string]any) { delete(c, "aud"); delete(c, "scope") },
			status: 400, err: "invalid_request", mp: "MP-011", msg: "Missing claim(s): aud, scope"},
		{name: "aud array", spec: func(s *sim) grantSpec {
			return grantSpec{now: time.Now(), issuer: s.url, edit: func(_, c map[string]any) { c["aud"] = []string{s.url} }}
		}, status: 400, err: "invalid_grant", mp: "MP-110", msg: "must be a single string, not an array"},
		{name: "iat string", edit: setClaim("iat", "1700000000"),
			status: 400, err: "invalid_request", mp: "MP-011", msg: "Claim iat must be a number"},
		{name: "empty scope", edit: setClaim("scope", ""),
			status: 400, err: "invalid_request", mp: "MP-011", msg: "Claim scope must be a non-empty string"},
		{name: "scope double space", edit: setClaim("scope", scopeECOC+"  "+scopeDelegert),
			status: 400, err: "invalid_request", mp: "MP-011", msg: "separated by single spaces"},
		{name: "consumer_org number", edit: setClaim("consumer_org", 974760673),
			status: 400, err: "invalid_request", mp: "MP-011", msg: "consumer_org must be a string"},
		{name: "resource empty array", edit: setClaim("resource", []any{}),
			status: 400, err: "invalid_request", mp: "MP-011", msg: "Claim resource must be a non-empty string or an array of one"},
		{name: "resource two values", edit: setClaim("resource", []any{"https://a.example/", "https://b.example/"}),
			status: 400, err: "invalid_request", mp: "MP-011", msg: "Claim resource has 2 values"},
		{name: "resource array of a number", edit: setClaim("resource", []any{1}),
			status: 400, err: "invalid_request", mp: "MP-011", msg: "Claim resource must be"},
		{name: "resource empty string", edit: setClaim("resource", ""),
			status: 400, err: "invalid_request", mp: "MP-011", msg: "Claim resource must be"},

		// 7. aud.
		{name: "aud token endpoint", spec: func(s *sim) grantSpec {
			return grantSpec{now: time.Now(), issuer: s.url + "token"}
		}, status: 400, err: "invalid_grant", mp: "MP-110", msg: "Client authentication failed. Invalid JWT claim aud"},
		{name: "aud without slash", spec: func(s *sim) grantSpec {
			return grantSpec{now: time.Now(), issuer: strings.TrimSuffix(s.url, "/")}
		}, status: 400, err: "invalid_grant", mp: "MP-110", msg: "Invalid JWT claim aud"},

		// 8. Time.
		{name: "iat ahead", spec: shifted(11*time.Second, 60*time.Second),
			status: 400, err: "invalid_grant", mp: "MP-130", msg: "Issue time is after now"},
		{name: "iat behind", spec: shifted(-11*time.Second, 60*time.Second),
			status: 400, err: "invalid_grant", mp: "MP-130", msg: "Issue time too far in the past"},
		{name: "lifetime 121 s", spec: shifted(0, 121*time.Second),
			status: 400, err: "invalid_grant", mp: "MP-130", msg: "JWT lifetime exceeds 120 seconds"},
		{name: "exp before iat", spec: shifted(5*time.Second, -3*time.Second),
			status: 400, err: "invalid_grant", mp: "MP-130", msg: "expires before it is issued"},
		{name: "expired", spec: shifted(-8*time.Second, 8*time.Second),
			status: 400, err: "invalid_grant", mp: "MP-130", msg: "JWT expired"},

		// 9 and 10. Client and organisation.
		{name: "unknown client", edit: setClaim("iss", "nobody"),
			status: 400, err: "invalid_grant", mp: "MP-100", msg: "Client authentication failed. Client not found"},
		{name: "certificate of another org", edit: func(h, _ map[string]any) { h["x5c"] = x5c(f.wrongOrg, f.ca.Issuing) },
			status: 400, err: "invalid_grant", mp: "MP-122", msg: "organisation number 974760673"},
		{name: "x5c grant of other client", edit: setClaim("iss", otherClientID),
			status: 400, err: "invalid_grant", mp: "MP-122", msg: "organisation number 991825827"},

		// 12. Scope.
		{name: "scope not granted", edit: setClaim("scope", scopeECOC+" svv:kjoretoy/leasingtaker"),
			status: 400, err: "invalid_scope", mp: "MP-200", msg: "svv:kjoretoy/leasingtaker"},

		// 13. Delegation.
		{name: "consumer_org invalid", edit: func(_, c map[string]any) { c["scope"] = scopeDelegert; c["consumer_org"] = "974760674" },
			status: 400, err: "invalid_request", mp: "MP-011", msg: "not a valid organisation number"},
		{name: "consumer_org is the client's own", edit: func(_, c map[string]any) { c["scope"] = scopeDelegert; c["consumer_org"] = string(supplierOrg) },
			status: 400, err: "invalid_request", mp: "MP-011", msg: "the client's own organisation"},
		// The fixture lists no ConsumerAccess, so the simulator cannot
		// know a consumer's own access: every missing delegation is
		// MP-251 (MP-250 is in TestErrorTable).
		{name: "consumer delegated nothing", edit: func(_, c map[string]any) { c["scope"] = scopeDelegert; c["consumer_org"] = string(lonelyConsumer) },
			status: 403, err: "forbidden", mp: "MP-251", msg: "has not delegated the scope " + scopeDelegert},
		{name: "consumer delegated not this scope", edit: setClaim("consumer_org", string(consumerOrg)),
			status: 403, err: "forbidden", mp: "MP-251", msg: scopeECOC},
		{name: "consumer delegated to another supplier", edit: func(_, c map[string]any) { c["scope"] = scopeDelegert; c["consumer_org"] = string(otherConsumer) },
			status: 403, err: "forbidden", mp: "MP-251", msg: "has not delegated the scope " + scopeDelegert + ` to the supplier "portvakt-demo"`},
	}
	s := startSim(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(func() { s.SetClock(nil) })
			var r result
			switch {
			case tt.request != nil:
				r = s.do(t, tt.request(s))
			case tt.assertion != "":
				r = s.post(t, tt.assertion)
			case tt.spec != nil:
				r = s.post(t, tt.spec(s).build(t))
			default:
				r = s.post(t, s.grant(t, tt.edit))
			}
			if r.status != tt.status || r.err != tt.err || r.mp != tt.mp || !strings.Contains(r.message, tt.msg) {
				t.Errorf("got %d %s %s %q\nwant %d %s %s containing %q", r.status, r.err, r.mp, r.message, tt.status, tt.err, tt.mp, tt.msg)
			}
		})
	}
	st := s.Stats()
	if st.Issued != 0 || st.TokenRequests != len(tests) {
		t.Errorf("stats %+v, want %d requests and none issued", st, len(tests))
	}
	total := 0
	for _, n := range st.Refused {
		total += n
	}
	if total != len(tests) || st.Refused["MP-130"] != 5 {
		t.Errorf("Refused %v: want %d refusals, 5 of them MP-130", st.Refused, len(tests))
	}
}

// shifted makes a grant whose iat is now+iatShift and exp iat+lifetime,
// with the simulator's clock stopped at a whole second so that boundaries
// are exact.
func shifted(iatShift, lifetime time.Duration) func(s *sim) grantSpec {
	return func(s *sim) grantSpec {
		now := time.Now().Truncate(time.Second)
		s.SetClock(func() time.Time { return now })
		return grantSpec{now: now, issuer: s.url, edit: func(_, c map[string]any) {
			c["iat"] = now.Add(iatShift).Unix()
			c["exp"] = now.Add(iatShift + lifetime).Unix()
		}}
	}
}

func formRequest(s *sim, body string) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, s.url+"token", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	return r
}

func TestGrantReuse(t *testing.T) {
	s := startSim(t, nil)
	jti := uuid.NewString()
	withJTI := func(scope string) func(h, c map[string]any) {
		return func(_, c map[string]any) { c["jti"] = jti; c["scope"] = scope }
	}

	g := s.grant(t, withJTI(scopeECOC))
	if r := s.post(t, g); r.status != http.StatusOK {
		t.Fatalf("first use: %d %s %s", r.status, r.mp, r.message)
	}
	if r := s.post(t, g); r.status != 400 || r.err != "invalid_grant" || r.mp != "MP-012" || !strings.Contains(r.message, "Grant is used before") {
		t.Errorf("same grant again: %d %s %s %q, want 400 invalid_grant MP-012", r.status, r.err, r.mp, r.message)
	}
	// A new grant reusing the jti is refused too.
	if r := s.post(t, s.grant(t, withJTI(scopeDelegert))); r.mp != "MP-012" {
		t.Errorf("new grant with used jti: %d %s, want MP-012", r.status, r.mp)
	}
}

func TestJTIBurnedByLateRefusal(t *testing.T) {
	s := startSim(t, nil)
	// Refused for its scope (check 12): the jti is burned, so a retry of
	// the very same grant fails as reused.
	g := s.grant(t, func(_, c map[string]any) { c["scope"] = "svv:kjoretoy/leasingtaker" })
	if r := s.post(t, g); r.mp != "MP-200" {
		t.Fatalf("first: %s, want MP-200", r.mp)
	}
	if r := s.post(t, g); r.mp != "MP-012" {
		t.Errorf("retry: %s, want MP-012", r.mp)
	}

	// Refused for its aud (check 7): not burned, so a corrected grant with
	// the same jti is accepted.
	jti := uuid.NewString()
	bad := grantSpec{now: time.Now(), issuer: s.url + "token", edit: func(_, c map[string]any) { c["jti"] = jti }}.build(t)
	if r := s.post(t, bad); r.mp != "MP-110" {
		t.Fatalf("bad aud: %s, want MP-110", r.mp)
	}
	if r := s.post(t, s.grant(t, func(_, c map[string]any) { c["jti"] = jti })); r.status != http.StatusOK {
		t.Errorf("corrected grant: %d %s %s, want 200", r.status, r.mp, r.message)
	}
}

func TestClockAndLifetime(t *testing.T) {
	s := startSim(t, func(c *Config) { c.TokenLifetime = 599 * time.Second; c.ClockSkew = 30 * time.Second })
	// A day ahead: the fixture's certificates are valid for a year.
	at := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	s.SetClock(func() time.Time { return at })
	g := grantSpec{now: at.Add(25 * time.Second), issuer: s.url}.build(t)
	r := s.post(t, g)
	if r.status != http.StatusOK || r.token.ExpiresIn != 599 {
		t.Fatalf("got %d %s %q expires_in %d, want 200 with 599", r.status, r.mp, r.message, r.token.ExpiresIn)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(r.token.AccessToken, claims); err != nil {
		t.Fatal(err)
	}
	if claims["iat"] != float64(at.Unix()) || claims["exp"] != float64(at.Unix()+599) {
		t.Errorf("iat %v exp %v, want the simulator's clock %d and +599", claims["iat"], claims["exp"], at.Unix())
	}
}

// TestTimeBoundaries checks that the limits of check 8 are inclusive where
// Maskinporten's are: |iat - now| = skew and exp - iat = 120 s pass.
func TestTimeBoundaries(t *testing.T) {
	s := startSim(t, nil)
	tests := []struct {
		name               string
		iatShift, lifetime time.Duration
		wantMP             string
	}{
		{"iat 10 s ahead", 10 * time.Second, 60 * time.Second, ""},
		{"iat 10 s behind", -10 * time.Second, 60 * time.Second, ""},
		{"lifetime 120 s", 0, 120 * time.Second, ""},
		{"exp 1 s from now", -10 * time.Second, 11 * time.Second, ""},
		{"exp now", -10 * time.Second, 10 * time.Second, "MP-130"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.post(t, shifted(tt.iatShift, tt.lifetime)(s).build(t))
			if r.mp != tt.wantMP {
				t.Errorf("got %d %s %q, want MP code %q", r.status, r.mp, r.message, tt.wantMP)
			}
		})
	}
}
