package mpsim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/portvakt/portvakt/devca"
	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/orgno"
)

// Organisation numbers used by the tests, all valid.
const (
	supplierOrg    orgno.Number = "991825827" // owns client "portvakt-demo"
	consumerOrg    orgno.Number = "974760673" // delegates ecoc.delegert to portvakt-demo
	otherConsumer  orgno.Number = "923609016" // delegates ecoc.delegert to other-supplier only
	lonelyConsumer orgno.Number = "987654325" // delegates nothing
)

const (
	clientID      = "portvakt-demo"
	otherClientID = "other-supplier"
	scopeECOC     = "svv:kjoretoy/ecoc"
	scopeDelegert = "svv:kjoretoy/ecoc.delegert"
	demoKID       = "demo-key"
)

// fixture holds the keys and certificates every test shares; RSA key
// generation is the slow part of these tests, so it happens once.
type fixture struct {
	ca, otherCA *devca.CA
	// key is the eSeal key; cert its certificate from ca for supplierOrg.
	key  *rsa.PrivateKey
	cert *x509.Certificate
	// untrusted is a certificate for key and supplierOrg from otherCA.
	untrusted *x509.Certificate
	// wrongOrg is a certificate for key from ca, but for consumerOrg.
	wrongOrg *x509.Certificate
	// legacy carries supplierOrg in serialNumber, as older eSeals do.
	legacy *x509.Certificate
	// shortLived is valid for one hour from its issue.
	shortLived *x509.Certificate
	// kidKey is registered as demoKID on portvakt-demo; otherKey nowhere.
	kidKey, otherKey *rsa.PrivateKey
	// signingKey signs the simulator's access tokens.
	signingKey *rsa.PrivateKey
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func getFixture(t *testing.T) *fixture {
	t.Helper()
	fixOnce.Do(func() { fix, fixErr = newFixture() })
	if fixErr != nil {
		t.Fatalf("building test fixture: %v", fixErr)
	}
	return fix
}

func newFixture() (*fixture, error) {
	f := &fixture{}
	var err error
	if f.ca, err = devca.New("Mpsim Test"); err != nil {
		return nil, err
	}
	if f.otherCA, err = devca.New("Mpsim Untrusted"); err != nil {
		return nil, err
	}
	keys := make([]*rsa.PrivateKey, 4)
	var wg sync.WaitGroup
	errs := make([]error, len(keys))
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = rsa.GenerateKey(rand.Reader, 2048) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	f.key, f.kidKey, f.otherKey, f.signingKey = keys[0], keys[1], keys[2], keys[3]

	subject := eseal.Subject{OrgNumber: supplierOrg, Organization: "Test AS"}
	if f.cert, err = f.ca.IssueESeal(&f.key.PublicKey, subject, 0); err != nil {
		return nil, err
	}
	if f.untrusted, err = f.otherCA.IssueESeal(&f.key.PublicKey, subject, 0); err != nil {
		return nil, err
	}
	if f.shortLived, err = f.ca.IssueESeal(&f.key.PublicKey, subject, time.Hour); err != nil {
		return nil, err
	}
	legacy := subject
	legacy.LegacySerialNumber = true
	if f.legacy, err = f.ca.IssueESeal(&f.key.PublicKey, legacy, 0); err != nil {
		return nil, err
	}
	if f.wrongOrg, err = f.ca.IssueESeal(&f.key.PublicKey, eseal.Subject{OrgNumber: consumerOrg, Organization: "Consumer AS"}, 0); err != nil {
		return nil, err
	}
	return f, nil
}

// config is the configuration most tests use: portvakt-demo with x5c and a
// kid key, another supplier, and delegations from two consumers.
func (f *fixture) config(issuer string) Config {
	return Config{
		Issuer:     issuer,
		TrustRoots: []*x509.Certificate{f.ca.Root},
		SigningKey: f.signingKey,
		Clients: []Client{
			{ID: clientID, OrgNumber: supplierOrg, Scopes: []string{scopeECOC, scopeDelegert},
				Keys: map[string]crypto.PublicKey{demoKID: &f.kidKey.PublicKey}},
			{ID: otherClientID, OrgNumber: "910000004", Scopes: []string{scopeDelegert}},
		},
		Delegations: []Delegation{
			{ConsumerOrg: consumerOrg, SupplierClientID: clientID, Scopes: []string{scopeDelegert}},
			{ConsumerOrg: otherConsumer, SupplierClientID: otherClientID, Scopes: []string{scopeDelegert}},
		},
	}
}

// sim is a simulator served over real HTTP.
type sim struct {
	*Server
	url string // base URL with trailing slash, equal to the issuer
}

// startSim serves a simulator for f.config, changed by mutate, on a
// loopback port; the issuer is the server's own URL.
func startSim(t *testing.T, mutate func(*Config)) *sim {
	t.Helper()
	f := getFixture(t)
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String() + "/"
	cfg := f.config(issuer)
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		ts.Close()
		t.Fatalf("New: %v", err)
	}
	ts.Config.Handler = s.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return &sim{Server: s, url: issuer}
}

// grantSpec describes a grant to build; the zero value with now and issuer
// set gives a valid x5c consumer grant for portvakt-demo.
type grantSpec struct {
	now    time.Time
	issuer string
	// key signs the grant; nil means the fixture's eSeal key.
	key *rsa.PrivateKey
	// signAlg signs with this method regardless of the header's alg.
	signAlg string
	// edit changes the header and claims before signing.
	edit func(h, c map[string]any)
}

// x5c encodes certs as an x5c header value.
func x5c(certs ...*x509.Certificate) []any {
	out := make([]any, len(certs))
	for i, c := range certs {
		out[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	return out
}

// build returns the signed grant.
func (g grantSpec) build(t *testing.T) string {
	t.Helper()
	f := getFixture(t)
	h := map[string]any{"alg": "RS256", "typ": "JWT", "x5c": x5c(f.cert, f.ca.Issuing)}
	c := map[string]any{
		"aud":   g.issuer,
		"iss":   clientID,
		"scope": scopeECOC,
		"iat":   g.now.Unix(),
		"exp":   g.now.Add(60 * time.Second).Unix(),
		"jti":   uuid.NewString(),
	}
	if g.edit != nil {
		g.edit(h, c)
	}
	alg := g.signAlg
	if alg == "" {
		alg, _ = h["alg"].(string)
	}
	method := jwt.GetSigningMethod(alg)
	if _, ok := method.(*jwt.SigningMethodRSA); !ok {
		method = jwt.SigningMethodRS256
	}
	key := g.key
	if key == nil {
		key = f.key
	}
	tok := &jwt.Token{Header: h, Claims: jwt.MapClaims(c), Method: method}
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing grant: %v", err)
	}
	return signed
}

// grant returns a grant for this simulator, built at its clock.
func (s *sim) grant(t *testing.T, edit func(h, c map[string]any)) string {
	t.Helper()
	return grantSpec{now: s.now(), issuer: s.url, edit: edit}.build(t)
}

// tokenForm is the body of a token request for assertion.
func tokenForm(assertion string) string {
	return url.Values{"grant_type": {GrantType}, "assertion": {assertion}}.Encode()
}

// result is a token endpoint answer, decoded.
type result struct {
	status  int
	header  http.Header
	token   TokenResponse
	err     string // OAuth error
	mp      string // MP code from error_description
	message string // error_description without code and trace id
	trace   string
}

var descRE = regexp.MustCompile(`^(.*) \((MP-\d{3})\) \[trace_id: ([0-9a-f]{16})\]$`)

// post sends a token request and decodes the answer, checking the parts
// every answer must have.
func (s *sim) post(t *testing.T, assertion string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+"token", strings.NewReader(tokenForm(assertion)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return s.do(t, req)
}

func (s *sim) do(t *testing.T, req *http.Request) result {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	r := result{status: resp.StatusCode, header: resp.Header, trace: resp.Header.Get("X-Trace-Id")}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(r.trace) {
		t.Errorf("X-Trace-Id = %q, want 16 hex digits", r.trace)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &r.token); err != nil {
			t.Fatalf("decoding token response %s: %v", body, err)
		}
		return r
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		t.Fatalf("decoding error response %s: %v", body, err)
	}
	r.err = eb.Error
	if m := descRE.FindStringSubmatch(eb.ErrorDescription); m != nil {
		r.message, r.mp = m[1], m[2]
		if m[3] != r.trace {
			t.Errorf("trace id in description %q differs from X-Trace-Id %q", m[3], r.trace)
		}
	} else {
		r.message = eb.ErrorDescription
	}
	return r
}
