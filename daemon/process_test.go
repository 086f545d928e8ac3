package daemon_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/testbinary"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// portvaktBinary is the portvakt command, built once per test binary.
func portvaktBinary(t testing.TB) string { return testbinary.Portvakt(t) }

// process is `portvakt serve` running as its own process.
type process struct {
	cmd    *exec.Cmd
	socket string
	api    portvaktv1.TokenServiceClient
}

// startProcess runs the daemon on e's configuration, with a shell limit on
// the size of the files it writes when fileLimitKiB > 0 (ulimit -f: writes
// past it fail with EFBIG, as on a full disk, even for root), and with any
// further flags of serve.
func startProcess(t *testing.T, e *env, fileLimitKiB int, serveFlags ...string) *process {
	t.Helper()
	return startProcessLimited(t, e, processLimits{fileKiB: fileLimitKiB}, serveFlags...)
}

// processLimits are shell limits on a daemon process; zero is unlimited
// (for open files: the limit the tests run with).
type processLimits struct {
	fileKiB int // ulimit -f
	// openFiles is ulimit -n: the soft and the hard limit on file
	// descriptors, so that the daemon cannot raise it.
	openFiles int
}

// startProcessLimited is startProcess with any of the limits.
func startProcessLimited(t *testing.T, e *env, limits processLimits, serveFlags ...string) *process {
	t.Helper()
	fileLimit, script := "unlimited", `ulimit -f "$1"; exec "$2" serve --config "$3" "${@:4}"`
	if limits.fileKiB > 0 {
		fileLimit = fmt.Sprint(limits.fileKiB)
	}
	if limits.openFiles > 0 {
		script = fmt.Sprintf("ulimit -n %d; %s", limits.openFiles, script)
	}
	args := append([]string{"-c", script, "sh", fileLimit, portvaktBinary(t), e.cfgFile}, serveFlags...)
	cmd := exec.Command("bash", args...)
	logFile, err := os.Create(filepath.Join(e.dir, fmt.Sprintf("portvakt-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, socket: filepath.Join(e.dir, "portvakt.sock")}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		logFile.Close()
	})
	answers := func() bool {
		c, err := client.Dial(client.Options{Socket: p.socket})
		if err != nil {
			return false
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err = c.API().WhoAmI(ctx, &portvaktv1.WhoAmIRequest{})
		return err == nil
	}
	for deadline := time.Now().Add(20 * time.Second); !answers(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) { // a hang guard; the daemon's log says why
			out, _ := os.ReadFile(logFile.Name())
			t.Fatalf("timed out waiting for the daemon's socket; its log:\n%s", out)
		}
	}
	c := dial(t, client.Options{Socket: p.socket})
	p.api = c.API()
	return p
}

// load is four clients asking the daemon for tokens in a loop.
type load struct {
	cancel context.CancelFunc
	got    chan received
	failed chan error
	tokens []received
}

// startLoad starts the clients and returns once they got atLeast tokens.
func startLoad(t *testing.T, api portvaktv1.TokenServiceClient, atLeast int) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	l := &load{cancel: cancel, got: make(chan received, 10000), failed: make(chan error, 4)}
	for worker := range 4 {
		go fetchLoop(ctx, api, worker, l.got, l.failed)
	}
	for len(l.tokens) < atLeast {
		l.tokens = append(l.tokens, <-l.got)
	}
	return l
}

// drain waits for every client to notice the daemon gone and returns all
// the tokens they received.
func (l *load) drain() []received {
	for range 4 {
		<-l.failed
	}
	l.cancel()
	close(l.got)
	for r := range l.got {
		l.tokens = append(l.tokens, r)
	}
	return l.tokens
}

// received is a token a client got, and the request id it came with.
type received struct {
	requestID, token string
}

// fetchLoop asks for tokens that each need a new signature (a new
// resource each time) until stop, and reports what it received.
func fetchLoop(ctx context.Context, api portvaktv1.TokenServiceClient, worker int, got chan<- received, failed chan<- error) {
	for i := 0; ctx.Err() == nil; i++ {
		var header metadata.MD
		resp, err := api.GetToken(ctx, &portvaktv1.GetTokenRequest{
			Scopes: []string{mptest.ScopeOwn}, Environment: "sim",
			Resource: fmt.Sprintf("https://api.example/%d/%d", worker, i),
		}, grpc.Header(&header))
		if err != nil {
			failed <- err
			return
		}
		got <- received{requestID: header.Get("x-request-id")[0], token: resp.GetAccessToken()}
	}
}

// auditFiles is the active audit file and any rotated ones.
func auditFiles(t *testing.T, e *env) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(e.dir, "audit", "audit*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no audit files: %v", err)
	}
	return files
}

// issuedByRequest indexes the audit's outcome records of issued tokens.
func issuedByRequest(t *testing.T, files []string) (issued map[string]audit.Record, signed map[string]bool) {
	t.Helper()
	issued, signed = map[string]audit.Record{}, map[string]bool{}
	if err := audit.Query(files, audit.Filter{}, func(r audit.Record) error {
		switch {
		case r.Kind == "outcome" && r.Outcome == "issued":
			issued[r.RequestID] = r
		case r.Kind == "signature":
			signed[r.GrantJTI] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return issued, signed
}

// assertTokensAudited checks that the audit log verifies after what
// happened to the daemon, and that every token a client received has its
// outcome and signature records.
func assertTokensAudited(t *testing.T, e *env, tokens []received, after string) audit.VerifyResult {
	t.Helper()
	files := auditFiles(t, e)
	res, err := audit.Verify(files...)
	if err != nil {
		t.Fatalf("after %s the audit does not verify: %v", after, err)
	}
	issued, signed := issuedByRequest(t, files)
	for _, r := range tokens {
		rec, ok := issued[r.requestID]
		if !ok {
			t.Fatalf("request %s got a token with no outcome record (%d records in the audit)", r.requestID, res.Records)
		}
		if !signed[rec.GrantJTI] {
			t.Fatalf("request %s's token came from grant %s, which has no signature record", r.requestID, rec.GrantJTI)
		}
	}
	return res
}

// TestKillNineUnderLoad kills the daemon with SIGKILL while four clients
// keep it signing, then checks that the audit verifies and that every
// token a client received has its outcome and signature records; then
// that a restarted daemon continues the chain.
func TestKillNineUnderLoad(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	p := startProcess(t, e, 0)

	l := startLoad(t, p.api, 40)
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL, mid-load
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	tokens := l.drain()

	res := assertTokensAudited(t, e, tokens, "kill -9")
	t.Logf("%d tokens received before the kill, all on record; %d records verified", len(tokens), res.Records)

	// A restart continues the same chain.
	p = startProcess(t, e, 0)
	if _, err := p.api.GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatal(err)
	}
	after, err := audit.Verify(auditFiles(t, e)...)
	if err != nil || after.Records <= res.Records {
		t.Fatalf("after a restart: %+v, %v", after, err)
	}
}

// TestUnwritableAuditFailsClosed: when the audit log can no longer be
// written (here: the file may not grow, as on a full disk), GetToken fails
// with a clear error and hands out no token, and health turns NOT_SERVING;
// the daemon then opens a new audit file by itself (which has room again),
// whose first record names the record that was lost, and tokens come
// again. The log verifies, with that gap.
func TestUnwritableAuditFailsClosed(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	p := startProcess(t, e, 24) // room for a few dozen records
	health := processHealth(t, p)

	var tokens []received
	var failure error
	for i := 0; failure == nil && i < 1000; i++ {
		var header metadata.MD
		resp, err := p.api.GetToken(t.Context(), &portvaktv1.GetTokenRequest{
			Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: fmt.Sprintf("https://api.example/%d", i),
		}, grpc.Header(&header))
		if err != nil {
			failure = err
			break
		}
		tokens = append(tokens, received{requestID: header.Get("x-request-id")[0], token: resp.GetAccessToken()})
	}
	if failure == nil {
		t.Fatal("the audit log never filled up")
	}
	assertAuditFailure(t, failure)
	t.Logf("%d tokens before the audit log filled up; then: %v", len(tokens), failure)
	// And it stays closed, and says so, until a new file is opened: not
	// before a second has passed (the back-off's floor).
	resp, err := p.api.GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: "https://api.example/after"})
	assertAuditUnavailable(t, resp, err)
	if s := overallHealth(t, health); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health while the audit log is unwritable: %s", s)
	}
	waitFor(t, "health SERVING again, once a new audit file is open", func() bool {
		return overallHealth(t, health) == healthpb.HealthCheckResponse_SERVING
	})
	var header metadata.MD
	if _, err := p.api.GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: "https://api.example/recovered"}, grpc.Header(&header)); err != nil {
		t.Fatalf("GetToken after the new audit file: %v", err)
	}
	recovered := header.Get("x-request-id")[0]
	stopProcess(t, p)

	files := auditFiles(t, e)
	res, err := audit.Verify(files...)
	if err != nil {
		t.Fatalf("the audit log does not verify after the failures: %v", err)
	}
	if len(res.Gaps) != 1 || res.Gaps[0].Cause != audit.CauseWrite || res.Gaps[0].FromSeq == 0 || res.Gaps[0].LostTo != res.Gaps[0].Seq-1 {
		t.Fatalf("gaps %+v, want one, of the record whose write failed", res.Gaps)
	}
	issued, _ := issuedByRequest(t, files)
	for _, r := range append(tokens, received{requestID: recovered}) {
		if _, ok := issued[r.requestID]; !ok {
			t.Fatalf("request %s got a token with no outcome record", r.requestID)
		}
	}
	out, code := verifyProcess(t, e)
	if code != 5 || !regexp.MustCompile(`audit\.log:1: gap record \d+ \(write, \S+\): writing record \d+ failed: write \S+: file too large; records? [\d-]+ (is|are) lost`).MatchString(out) {
		t.Fatalf("portvakt audit verify exited %d, printing:\n%s", code, out)
	}
}

func assertAuditFailure(t *testing.T, err error) {
	t.Helper()
	st, _ := statusOf(err)
	if st.Code().String() != "Unavailable" || !containsAny(st.Message(), "audit") {
		t.Fatalf("error = %v, want Unavailable saying the audit log failed", err)
	}
}
