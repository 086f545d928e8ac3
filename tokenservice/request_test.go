package tokenservice

import (
	"errors"
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
	tests := []struct {
		name  string
		s     *Service
		req   *portvaktv1.GetTokenRequest
		field string // of the error; "" for success
	}{
		{"minimal", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"svv:kjoretoy/ecoc"}}), ""},
		{"environment implied", testService("prod"), &portvaktv1.GetTokenRequest{Scopes: []string{"svv:kjoretoy/ecoc"}}, ""},
		{"environment needed", two, &portvaktv1.GetTokenRequest{Scopes: []string{"svv:kjoretoy/ecoc"}}, "environment"},
		{"unknown environment", two, &portvaktv1.GetTokenRequest{Scopes: []string{"svv:kjoretoy/ecoc"}, Environment: "ver2"}, "environment"},
		{"no scope", two, ok(&portvaktv1.GetTokenRequest{}), "scopes"},
		{"eleven scopes", two, ok(&portvaktv1.GetTokenRequest{Scopes: strings.Fields(strings.Repeat("a:b ", 11))}), "scopes"},
		{"bad scope", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"svv:a b"}}), "scopes"},
		{"bad consumer_org", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, ConsumerOrg: "12345678"}), "consumer_org"},
		{"bad resource", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, Resource: "/relative"}), "resource"},
		{"negative min validity", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, MinValidity: durationpb.New(-time.Second)}), "min_validity"},
		{"min validity too long", two, ok(&portvaktv1.GetTokenRequest{Scopes: []string{"a:b"}, MinValidity: durationpb.New(3 * time.Hour)}), "min_validity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.s.parseRequest(tt.req)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if r.key.Resource != "https://www.utv.vegvesen.no" {
					t.Errorf("default resource not applied: %+v", r.key)
				}
				return
			}
			var fe *fieldError
			if !errors.As(err, &fe) || fe.field != tt.field {
				t.Fatalf("error = %v, want a problem with field %s", err, tt.field)
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
