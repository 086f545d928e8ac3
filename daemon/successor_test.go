package daemon_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// successorLabel is the renewed certificate's key in successorWorld.
const successorLabel = "eseal-2027"

// successorWorld is a world whose token holds, beside the eSeal, a
// renewed certificate imported ahead of time (a new key, certified for
// three years), and that certificate's chain.
func successorWorld(t *testing.T) (*mptest.World, []*x509.Certificate) {
	t.Helper()
	w := mptest.New(t, mptest.Options{NoSigner: true})
	w.Token.NewKey(t, successorLabel)
	chain := w.Certify(t, successorLabel, eseal.Subject{OrgNumber: mptest.OwnOrg, Organization: "Test AS"}, 3*365*24*time.Hour)
	if _, err := hsm.ImportCertificates(w.Token.Token, hsm.KeySelector{Label: successorLabel}, chain, time.Now()); err != nil {
		t.Fatal(err)
	}
	return w, chain
}

// TestSuccessorTakesOver: a renewed certificate (a new key, certified and
// imported on the token ahead of time) named as the environment's
// successor takes over signing at its configured time, without a
// restart: grants before carry the old certificate, grants after it the
// new chain, and Maskinporten (the simulator) accepts both.
// ListEnvironments and the metrics show the successor while it waits.
func TestSuccessorTakesOver(t *testing.T) {
	w, chain := successorWorld(t)
	const label = successorLabel
	takeOver := time.Now().Add(3 * time.Second).Truncate(time.Second)
	e := prepare(t, w)
	e.edit(t, withSettings(fmt.Sprintf("successor: {key_label: %s, from: %q}", label, takeOver.Format(time.RFC3339))))
	e.serve(t)

	sha := func(der []byte) string { sum := sha256.Sum256(der); return hex.EncodeToString(sum[:]) }
	oldSHA, newSHA := sha(w.Chain[0].Raw), sha(chain[0].Raw)
	envs, err := e.unix.API().ListEnvironments(t.Context(), &portvaktv1.ListEnvironmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	env := envs.GetEnvironments()[0]
	if env.GetCertificateSha256() != oldSHA || env.GetSuccessor().GetCertificateSha256() != newSHA ||
		!env.GetSuccessor().GetTakesOverAt().AsTime().Equal(takeOver) || env.GetSuccessor().GetKeyLabel() != label {
		t.Fatalf("ListEnvironments before the takeover: %v; want the current certificate and the successor at %s", env, takeOver)
	}
	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	if v, _ := value(families, "portvakt_certificate_successor_takeover_timestamp_seconds", map[string]string{"environment": "sim"}); v != float64(takeOver.Unix()) {
		t.Errorf("portvakt_certificate_successor_takeover_timestamp_seconds = %v, want %d", v, takeOver.Unix())
	}

	get := func(resource string) {
		t.Helper()
		if _, err := e.unix.API().GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: resource}); err != nil {
			t.Fatalf("GetToken for %s: %v", resource, err)
		}
	}
	get("https://before.example")
	time.Sleep(time.Until(takeOver))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		envs, err := e.unix.API().ListEnvironments(t.Context(), &portvaktv1.ListEnvironmentsRequest{})
		if err == nil && envs.GetEnvironments()[0].GetSuccessor() == nil {
			if got := envs.GetEnvironments()[0].GetCertificateSha256(); got != newSHA {
				t.Fatalf("after the takeover the environment shows certificate %s, want %s", got, newSHA)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the successor did not take over by %s", takeOver.Add(10*time.Second))
		}
	}
	get("https://after.example")

	byResource := map[string]string{}
	var takeover *audit.Record
	for _, r := range auditOf(t, e) {
		switch {
		case r.Kind == audit.KindKey && r.Outcome == "certificate_takeover":
			takeover = &r
		case r.Kind == audit.KindSignature:
			byResource[r.Resource] = r.CertSHA256
			// The takeover's record is the line between the certificates.
			if want := map[bool]string{true: oldSHA, false: newSHA}[takeover == nil]; r.CertSHA256 != want {
				t.Errorf("signature record %d (%s) names certificate %s, %s the takeover's record", r.Seq, r.Resource, r.CertSHA256, map[bool]string{true: "before", false: "after"}[takeover == nil])
			}
		}
	}
	if takeover == nil || takeover.CertSHA256 != newSHA || takeover.KeyLabel != label || !slices.Contains(takeover.Identities, "internal:certificate-renewal") {
		t.Errorf("the takeover's audit record: %+v; want a key record certificate_takeover naming %s (%s), by internal:certificate-renewal", takeover, label, newSHA)
	}
	if byResource["https://before.example"] != oldSHA || byResource["https://after.example"] != newSHA {
		t.Errorf("signature records by resource name certificates %v; want %s before the takeover and %s after", byResource, oldSHA, newSHA)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "the successor certificate takes over signing") {
		t.Errorf("no log line of the takeover:\n%s", logs)
	}
}

// TestSuccessorDueAtStartIsOnRecord: a successor whose time came while
// the daemon was down signs from the start, and its takeover is on
// record as one while the daemon runs is, saying so, before the first
// grant (which carries the new certificate). Before, a start signed with
// the new certificate and no record said when or why it changed.
func TestSuccessorDueAtStartIsOnRecord(t *testing.T) {
	w, chain := successorWorld(t)
	const label = successorLabel
	// Due a second ago: within the certificate's validity, which is
	// backdated (devca's clock skew).
	due := time.Now().Add(-time.Second).Truncate(time.Second)
	e := prepare(t, w)
	e.edit(t, withSettings(fmt.Sprintf("successor: {key_label: %s, from: %q}", label, due.Format(time.RFC3339))))
	e.serve(t)
	if _, err := e.unix.API().GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatal(err)
	}
	e.stop()

	sum := sha256.Sum256(chain[0].Raw)
	newSHA := hex.EncodeToString(sum[:])
	var takeovers []audit.Record
	signatures := 0
	for _, r := range auditOf(t, e) {
		switch {
		case r.Kind == audit.KindKey && r.Outcome == "certificate_takeover":
			takeovers = append(takeovers, r)
		case r.Kind == audit.KindSignature:
			signatures++
			if len(takeovers) == 0 {
				t.Errorf("signature record %d comes before the takeover's record", r.Seq)
			}
			if r.CertSHA256 != newSHA {
				t.Errorf("signature record %d names certificate %s; want the successor's %s", r.Seq, r.CertSHA256, newSHA)
			}
		}
	}
	if len(takeovers) != 1 {
		t.Fatalf("%d takeover records; want the start's one", len(takeovers))
	}
	r := takeovers[0]
	if r.CertSHA256 != newSHA || r.KeyLabel != label || !slices.Contains(r.Identities, "internal:certificate-renewal") ||
		!strings.Contains(r.Reason, due.UTC().Format(time.RFC3339)) || !strings.Contains(r.Reason, "while the daemon was down") {
		t.Errorf("the takeover's record: %+v; want %s (%s) by internal:certificate-renewal, its time and that it came while the daemon was down", r, label, newSHA)
	}
	if signatures == 0 {
		t.Error("no signature record: the token was not fetched")
	}
}
