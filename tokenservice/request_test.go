package tokenservice

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portvakt/portvakt/maskinporten"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

func testService(envs ...string) *Service {
	s := &Service{envs: map[string]*Environment{}}
	for _, name := range envs {
		s.envs[name] = &Environment{Config: maskinporten.Environment{Name: name, Resource: "https://www.utv.vegvesen.no"}, ClientID: "client-" + name}
		s.envNames = append(s.envNames, name)
	}
	return s
}

func TestParseRequest(t *testing.T) {
	two := testService("prod", "test")
	ok := func(r *portvaktv1.GetTokenRequest) *portvaktv1.GetTokenRequest {
		if r.Environment == "" {
			r.Environment = "test"
		}
		return r
	}
	long := func(prefix string, n int) string { return prefix + strings.Repeat("a", n-len(prefix)) }
	atBound := make([]string, maxScopesBytes/maxScopeBytes) // every scope and the total at their bounds
	for i := range atBound {
		atBound[i] = long(fmt.Sprintf("svv:%d/", i), maxScopeBytes)
	}
	tests := []struct {
		name  string
		s     *Service
		req   *portvaktv1.GetTokenRequest
		field string // of the error; "" for success
		says  string // a part of the error's message, such as its bound
	}{
		{"minimal", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"svv:kjoretoy/ecoc"}}), "", ""},
		{"environment implied", testService("prod"), &portvaktv1.GetTokenRequest{Scopes: []string{"svv:kjoretoy/ecoc"}}, "", ""},
		{"environment needed", two, &portvaktv1.GetTokenRequest{Scopes: []string{"svv:kjoretoy/ecoc"}}, "environment", ""},
		{"unknown environment", two, &portvaktv1.GetTokenRequest{Scopes: []string{"svv:kjoretoy/ecoc"}, Environment: "ver2"}, "environment", ""},
		{"no scope", two, ok(&portvaktv1.GetTokenRequest{}), "scopes", ""},
		{"eleven scopes", two, ok(&portvaktv1.GetTokenRequest{Scopes: strings.Fields(strings.Repeat("a:b ", 11))}), "scopes", ""},
		{"bad scope", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"svv:a b"}}), "scopes", ""},
		{"bad consumer_org", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, ConsumerOrg: "12345678"}), "consumer_org", ""},
		{"bad resource", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, Resource: "/relative"}), "resource", ""},
		{"negative min validity", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, MinValidity: durationpb.New(-time.Second)}), "min_validity", ""},
		{"min validity too long", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, MinValidity: durationpb.New(3 * time.Hour)}), "min_validity", ""},

		// Bounds, so that no record grows with what a caller sends.
		{"scopes at every bound", two, ok(&portvaktv1.GetTokenRequest{Scopes: atBound, Resource: long("https://api.example/", maxResourceBytes)}), "", ""},
		{"a scope too long", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b", long("svv:", maxScopeBytes+1)}}), "scopes", "scope 2 is 129 bytes long; a scope has at most 128"},
		{"a scope of 60 kB", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{long("svv:", 60_000)}}), "scopes", "at most 128"},
		{"scopes too long together", two, ok(&portvaktv1.GetTokenRequest{Scopes: append(atBound, "a:b")}), "scopes", "at most 512"},
		{"environment too long", two, &portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, Environment: long("prod", 60_000)}, "environment", "at most 64"},
		{"consumer_org too long", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, ConsumerOrg: long("9", 60_000)}), "consumer_org", "at most 32"},
		{"resource too long", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, Resource: long("https://api.example/", maxResourceBytes+1)}), "resource", "at most 256"},

		// Altinn system users.
		{"system user", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{Org: "313427137"}}), "", ""},
		{"system user with a reference at its bound", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{Org: "313427137", ExternalRef: long("ref ", 128)}}), "", ""},
		{"system user and consumer_org", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, ConsumerOrg: "974760673", SystemUser: &portvaktv1.SystemUser{Org: "313427137"}}), "system_user", "not both"},
		{"system user without org", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{}}), "system_user.org", "give the customer's organisation number"},
		{"system user org with a bad check digit", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{Org: "313427138"}}), "system_user.org", "check digit"},
		{"system user org of eight digits", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{Org: "31342713"}}), "system_user.org", ""},
		{"system user org too long", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{Org: long("3", 60_000)}}), "system_user.org", "at most 32"},
		{"external reference too long", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{Org: "313427137", ExternalRef: long("ref", 60_000)}}), "system_user.external_ref", "at most 128"},
		{"external reference with a line break", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{Org: "313427137", ExternalRef: "ref\n{\"forged\":1}"}}), "system_user.external_ref", "printable ASCII"},
		{"external reference not ASCII", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{Org: "313427137", ExternalRef: "kjøretøy"}}), "system_user.external_ref", "printable ASCII"},
		{"external reference ending in a space", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, SystemUser: &portvaktv1.SystemUser{Org: "313427137", ExternalRef: "ref "}}), "system_user.external_ref", "space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.s.parseRequest(tt.req)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if want := cmp.Or(tt.req.Resource, "https://www.utv.vegvesen.no"); r.key.Resource != want {
					t.Errorf("resource %q, want %q", r.key.Resource, want)
				}
				return
			}
			var fe *fieldError
			if !errors.As(err, &fe) || fe.field != tt.field || !strings.Contains(fe.Error(), tt.says) {
				t.Fatalf("error = %v, want a problem with field %s saying %q", err, tt.field, tt.says)
			}
			// The message is a log line's and the caller's: it must not
			// grow with what was sent.
			if n := len(fe.Error()); n > 300 {
				t.Fatalf("a message of %d bytes: %.100s…", n, fe.Error())
			}
		})
	}
}

func TestRequestKeyIsNormalised(t *testing.T) {
	s := testService("prod")
	a, _ := s.parseRequest(&portvaktv1.GetTokenRequest{Scopes: []string{"b:y", "a:x"}, Resource: "https://api.example"})
	b, _ := s.parseRequest(&portvaktv1.GetTokenRequest{Scopes: []string{"a:x", "b:y", "a:x"}, Resource: "https://api.example"})
	if a.key != b.key || a.key.ClientID != "client-prod" {
		t.Fatalf("keys %+v and %+v differ", a.key, b.key)
	}
}

// TestSystemUserInTheKey: the system user's customer and reference are in
// the key (and so in the cache, the grant and the records); a request
// without one has neither.
func TestSystemUserInTheKey(t *testing.T) {
	s := testService("prod")
	r, err := s.parseRequest(&portvaktv1.GetTokenRequest{Scopes: []string{"a:x"}, SystemUser: &portvaktv1.SystemUser{Org: "313427137", ExternalRef: "ref-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.key.SystemUserOrg != "313427137" || r.key.SystemUserRef != "ref-1" || r.key.ConsumerOrg != "" {
		t.Fatalf("key = %+v", r.key)
	}
	if su := systemUser(r.key); su == nil || *su != (maskinporten.SystemUser{Org: "313427137", ExternalRef: "ref-1"}) {
		t.Fatalf("grant's system user = %+v", su)
	}
	own, _ := s.parseRequest(&portvaktv1.GetTokenRequest{Scopes: []string{"a:x"}})
	if own.key.SystemUserOrg != "" || own.key.SystemUserRef != "" || systemUser(own.key) != nil || own.key == r.key {
		t.Fatalf("own key = %+v", own.key)
	}
}

// The scopes a request is decided on and answered with are the cache
// key's, in its order and without repeats, whatever order they came in;
// the request's own slice is not changed.
func TestParsedScopesAreTheKeys(t *testing.T) {
	s := testService("test")
	tests := [][]string{
		{"svv:a"},
		{"svv:b", "svv:a"},
		{"svv:b", "svv:a", "svv:b", "svv:c"},
	}
	for _, scopes := range tests {
		t.Run(strings.Join(scopes, "+"), func(t *testing.T) {
			asked := slices.Clone(scopes)
			r, err := s.parseRequest(&portvaktv1.GetTokenRequest{Scopes: scopes, Environment: "test"})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.scopes, r.key.ScopeList()) {
				t.Errorf("scopes %q, the key's %q", r.scopes, r.key.ScopeList())
			}
			if !slices.Equal(scopes, asked) {
				t.Errorf("the request's scopes became %q", scopes)
			}
		})
	}
}
