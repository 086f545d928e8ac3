package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestLogCalls: log.calls decides which successful calls get an info
// line; a denied call is logged whatever it says, and every call, logged
// or not, is in the audit log.
func TestLogCalls(t *testing.T) {
	const calls = 7 // successful, cached after the first
	tests := []struct {
		config   string
		infoOK   int // successful calls' lines at info
		logsDeny bool
	}{
		{"log: {level: info}", 0, true}, // errors, the default
		{"log: {level: info, calls: errors}", 0, true},
		{"log: {level: info, calls: all}", calls, true},
		{"log: {level: info, calls: sample, calls_sample: 3}", 3, true}, // the 1st, 4th and 7th
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			w := mptest.New(t, mptest.Options{})
			e := startDaemon(t, w, func(cfg string) string { return strings.Replace(cfg, "log: {level: debug}", tt.config, 1) })
			ok := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
			for range calls {
				if _, err := e.unix.API().GetToken(context.Background(), ok); err != nil {
					t.Fatal(err)
				}
			}
			denied := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeElsewhere}, Environment: "sim"}
			if _, err := e.unix.API().GetToken(context.Background(), denied); err == nil {
				t.Fatal("the denied request was allowed")
			}
			var infoOK, deny int
			for _, line := range strings.Split(e.logs.String(), "\n") {
				if !strings.Contains(line, `"msg":"call"`) || !strings.Contains(line, "GetToken") {
					continue
				}
				switch {
				case strings.Contains(line, `"code":"OK"`) && strings.Contains(line, `"level":"INFO"`):
					infoOK++
				case strings.Contains(line, `"code":"PermissionDenied"`) && strings.Contains(line, `"level":"WARN"`):
					deny++
				}
			}
			if infoOK != tt.infoOK || deny != 1 {
				t.Errorf("%d successful calls at info (want %d), %d denials at warn (want 1):\n%s", infoOK, tt.infoOK, deny, e.logs)
			}
			e.stop()
			ids := map[string]bool{}
			for _, r := range auditOf(t, e) {
				if r.Method == portvaktv1.TokenService_GetToken_FullMethodName {
					ids[r.RequestID] = true
				}
			}
			if len(ids) != calls+1 {
				t.Errorf("%d GetToken calls in the audit log, want every one (%d)", len(ids), calls+1)
			}
		})
	}
}
