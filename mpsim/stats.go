package mpsim

import (
	"maps"
	"slices"
)

// Stats counts what the simulator has seen since New.
type Stats struct {
	// TokenRequests counts every request to the token endpoint.
	TokenRequests int
	// Issued counts access tokens issued.
	Issued int
	// Refused counts refusals by MP code, e.g. Refused["MP-012"].
	Refused map[string]int
	// Faulted counts requests answered with, or dropped by, an injected
	// fault. Latency alone does not count: such requests are answered
	// normally, only later.
	Faulted int
	// JTIs holds the jti of every assertion received in a well-formed
	// token request, in order, including those answered by a fault and
	// those later refused; "" where the assertion had none or could not
	// be read. Tests use it to check that
	// a client sends a fresh jti on every retry.
	JTIs []string
	// Resources counts the same requests as JTIs by their assertion's
	// resource claim: "" for none (or one that could not be read), the
	// strings of an array joined by spaces. Distinct resources being
	// distinct cache keys of a client, tests use it to count the token
	// requests sent for one key, the faulted ones included.
	Resources map[string]int
	// SelfServiceRequests counts requests to the self-service API;
	// JWKSReplaced those that replaced a set.
	SelfServiceRequests, JWKSReplaced int
}

// Stats returns a snapshot; changing it does not affect the server.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Refused = maps.Clone(s.stats.Refused)
	st.JTIs = slices.Clone(s.stats.JTIs)
	st.Resources = maps.Clone(s.stats.Resources)
	return st
}

func (s *Server) update(f func(*Stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

func (s *Server) countRequest() { s.update(func(st *Stats) { st.TokenRequests++ }) }
func (s *Server) recordJTI(jti, resource string) {
	s.update(func(st *Stats) {
		st.JTIs = append(st.JTIs, jti)
		st.Resources[resource]++
	})
}

func (s *Server) countRefusal(mp string) { s.update(func(st *Stats) { st.Refused[mp]++ }) }
func (s *Server) countFault()            { s.update(func(st *Stats) { st.Faulted++ }) }
func (s *Server) countIssued()           { s.update(func(st *Stats) { st.Issued++ }) }
