package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvakt/portvakt/devca"
)

func TestRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":8089", "[::]:0", "192.0.2.1:80", "example.com:80"} {
		err := run(context.Background(), []string{"--config", "unused.yaml", "--listen", addr}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "only listens on loopback") || !errors.As(err, new(usageError)) {
			t.Errorf("--listen %s: %v, want a usage error about loopback", addr, err)
		}
	}
}

func TestRequiresConfig(t *testing.T) {
	err := run(context.Background(), nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--config is required") {
		t.Errorf("no flags: %v, want --config is required", err)
	}
}

// TestServes starts the command on a free port, reads the port from its
// first line, fetches the metadata and stops it as a signal would.
func TestServes(t *testing.T) {
	ca, err := devca.New("Sim Cmd Test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), root, 0o644); err != nil {
		t.Fatal(err)
	}
	config := "trust_roots: [root.pem]\nclients:\n  - {client_id: demo, org_number: \"991825827\", scopes: [svv:kjoretoy/ecoc]}\n"
	if err := os.WriteFile(filepath.Join(dir, "sim.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdoutR, stdoutW := io.Pipe()
	stderr := &lockedWriter{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--config", filepath.Join(dir, "sim.yaml")}, stdoutW, stderr)
		stdoutW.Close()
	}()

	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the first line: %v (stderr %q)", err, stderr.String())
	}
	m := regexp.MustCompile(`^maskinporten-sim listening on (http://127\.0\.0\.1:\d+/) \(issuer (\S+)\)\n$`).FindStringSubmatch(line)
	if m == nil || m[1] != m[2] {
		t.Fatalf("first line %q, want the listen URL and the same issuer", line)
	}
	go io.Copy(io.Discard, stdoutR)

	resp, err := http.Get(m[1] + ".well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta.Issuer != m[1] || meta.TokenEndpoint != m[1]+"token" {
		t.Errorf("metadata %+v, want issuer %s", meta, m[1])
	}

	// A refused request is logged with its MP code, and without the
	// assertion.
	const secret = "not-a-jwt-but-treat-it-as-secret"
	resp, err = http.PostForm(m[1]+"token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}

	logs := stderr.String()
	if !strings.Contains(logs, "path=/token status=400") || !strings.Contains(logs, "mp_code=MP-011") {
		t.Errorf("stderr lacks the token request's log line:\n%s", logs)
	}
	if strings.Contains(logs, secret) {
		t.Errorf("stderr contains the assertion:\n%s", logs)
	}
}

// lockedWriter collects output written by the server's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
