package charttest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// chartDir is the chart under test.
const chartDir = "../portvakt"

// kubeVersion is what `helm template` renders for: a helm built with `go
// install` assumes v1.20, below the chart's kubeVersion.
const kubeVersion = "1.33.0"

// helmBinary is $HELM, helm on PATH, or $(go env GOPATH)/bin/helm.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		h := filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
		if _, err := os.Stat(h); err == nil {
			return h
		}
	}
	t.Fatal("no helm: run `make helm-check`, or `go install helm.sh/helm/v3/cmd/helm@v3.22.0`")
	return ""
}

// valueSets are the files in the chart's ci/ directory, by name.
func valueSets(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no value sets in %s/ci: %v", chartDir, err)
	}
	sort.Strings(files)
	return files
}

// helmTemplate renders the chart with the value files and --set values.
func helmTemplate(t *testing.T, valueFiles []string, sets ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", "pv", chartDir, "--namespace", "portvakt", "--kube-version", kubeVersion}
	for _, f := range valueFiles {
		args = append(args, "--values", f)
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &renderError{err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

type renderError struct {
	err    error
	stderr string
}

func (e *renderError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

var (
	renderedMu sync.Mutex
	rendered   = map[string][]Object{}
)

// render renders and decodes the chart with one value set, once per test
// binary.
func render(t *testing.T, valueSet string) []Object {
	t.Helper()
	renderedMu.Lock()
	defer renderedMu.Unlock()
	if objs, ok := rendered[valueSet]; ok {
		return objs
	}
	out, err := helmTemplate(t, []string{valueSet})
	if err != nil {
		t.Fatalf("helm template with %s: %v", valueSet, err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatalf("with %s: %v", valueSet, err)
	}
	rendered[valueSet] = objs
	return objs
}

// renderSets is the chart rendered with the defaults and --set sets,
// decoded strictly; any failure ends the test.
func renderSets(t *testing.T, sets ...string) []Object {
	t.Helper()
	out, err := helmTemplate(t, nil, sets...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// forEachValueSet runs f in a subtest per value set.
func forEachValueSet(t *testing.T, f func(t *testing.T, set string, objs []Object)) {
	for _, set := range valueSets(t) {
		t.Run(strings.TrimSuffix(filepath.Base(set), ".yaml"), func(t *testing.T) { f(t, set, render(t, set)) })
	}
}

// only returns the one object of type T, failing unless there is exactly one.
func only[T any](t *testing.T, objs []Object) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.Typed.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T rendered, want 1", len(found), zero)
	}
	return found[0]
}

// all returns the objects of type T.
func all[T any](objs []Object) []T {
	var found []T
	for _, o := range objs {
		if v, ok := o.Typed.(T); ok {
			found = append(found, v)
		}
	}
	return found
}
