// Package layering holds the test that keeps the request's flow one way:
// a leaf package imports nothing above it, and production code imports no
// development package.
package layering

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/portvakt/portvakt/"

// deps is every Portvakt package pkg depends on, directly or not.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", module+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	var ours []string
	for _, p := range strings.Fields(string(out)) {
		if rest, ok := strings.CutPrefix(p, module); ok && rest != pkg {
			ours = append(ours, rest)
		}
	}
	return ours
}

func TestLeavesImportNothingAbove(t *testing.T) {
	for pkg, allowed := range map[string][]string{
		// Who is calling, as the transport proved it.
		"identity": {"syntax"},
		// Per-client rules: identities and scopes are spelled by syntax.
		"policy": {"syntax", "orgno", "internal/strictyaml", "internal/duration", "internal/filewatch"},
		// How Portvakt reads its files, and its one duration syntax.
		"internal/strictyaml": {"internal/duration"},
		"internal/duration":   {},
		// Which files changed: fsnotify and nothing of ours.
		"internal/filewatch": {},
		// TLS material from PEM files: the standard library alone.
		"internal/tlsfiles": {},
		"syntax":            {},
		// The cache knows tokens and the one back-off, nothing of how a
		// token is got.
		"tokencache": {"maskinporten", "internal/backoff", "orgno", "secret", "syntax"},
		// Digdir's self-service API: HTTP and JWKs, the token given to it.
		"selfservice": {"secret"},
		// Rotation orders the steps; the HSM, the JWKS, the signing and
		// the audit are behind its interfaces.
		"rotation": {"selfservice", "secret", "internal/backoff"},
	} {
		t.Run(pkg, func(t *testing.T) {
			for _, dep := range deps(t, pkg) {
				if !slices.Contains(allowed, dep) {
					t.Errorf("%s depends on %s; it may depend only on %v", pkg, dep, allowed)
				}
			}
		})
	}
}

// TestProductionImportsNoDevelopmentPackage: the daemon and the token
// path never link the SoftHSM2 provisioning meant for development.
func TestProductionImportsNoDevelopmentPackage(t *testing.T) {
	for _, pkg := range []string{"daemon", "tokenservice", "signer", "audit"} {
		for _, dep := range deps(t, pkg) {
			if dep == "softhsm" || strings.HasPrefix(dep, "softhsm/") || strings.HasSuffix(dep, "test") {
				t.Errorf("%s depends on the development package %s", pkg, dep)
			}
		}
	}
}
