package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// MaxInstanceBytes bounds an instance id.
const MaxInstanceBytes = 64

// ValidInstance checks an instance id: 1 to 64 of A-Z, a-z, 0-9, '.', '_'
// and '-', so that it fits a file name and an HSM object label as it is.
func ValidInstance(id string) error {
	if id == "" || len(id) > MaxInstanceBytes {
		return fmt.Errorf("audit instance %q: give 1 to %d characters", id, MaxInstanceBytes)
	}
	for _, c := range []byte(id) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("audit instance %q: only letters, digits, '.', '_' and '-' are allowed", id)
		}
	}
	return nil
}

// HeadLabelOf is the label of the HSM data object that holds instance's
// head: HeadLabel-<instance>, so that replicas sealing on one HSM keep a
// head each rather than overwriting one another's. For "" (a log without
// instance ids, as before they existed) it is HeadLabel.
func HeadLabelOf(instance string) string {
	if instance == "" {
		return HeadLabel
	}
	return HeadLabel + "-" + instance
}

// LogFiles returns the files of the one log whose active file is active:
// its rotated files in the order of their records, then the active file
// when it exists; other logs in the same directory (other replicas') are
// left out. It wraps ErrNoLog when there is no file of that log.
func LogFiles(active string) ([]string, error) {
	dir, base := filepath.Dir(active), logBase(active)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing the audit log: %w", err)
	}
	var rotated []rotatedFile
	for _, e := range entries {
		if rf, ok := parseRotated(dir, e.Name()); ok && rf.base == base && e.Type().IsRegular() {
			rotated = append(rotated, rf)
		}
	}
	slices.SortFunc(rotated, func(x, y rotatedFile) int {
		switch {
		case x.first < y.first:
			return -1
		case x.first > y.first:
			return 1
		}
		return 0
	})
	files := make([]string, 0, len(rotated)+1)
	for _, rf := range rotated {
		files = append(files, rf.path)
	}
	if st, err := os.Stat(active); err == nil && st.Mode().IsRegular() {
		files = append(files, active)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no file of this log (%w)", active, ErrNoLog)
	}
	return files, nil
}

// InstanceOf returns the instance the log in files was written by: that
// of its first record that names one, "" for a log without instance ids.
// Records of another instance after it are Verify's to report.
func InstanceOf(files []string) (string, error) {
	var id string
	errFound := errors.New("found")
	err := Query(files, Filter{}, func(r Record) error {
		if r.Instance != "" {
			id = r.Instance
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return "", err
	}
	return id, nil
}

// GroupByInstance expands paths (see Expand) and sorts the files by the
// instance whose chain they hold: several replicas' logs can be given at
// once, and each chain verified on its own. A file's log is known by its
// directory and name (audit.log and its rotated audit.<seqs>.<time>.log),
// and a log's instance is that of its first record naming one (see
// InstanceOf; a log begun before instance ids may name one only later);
// files of a log without instance ids are under "". The instances are
// returned sorted, each with its files in the order given.
func GroupByInstance(paths ...string) (instances []string, files map[string][]string, err error) {
	all, err := expandAll(paths...)
	if err != nil {
		return nil, nil, err
	}
	logOf := func(f string) string {
		dir, name := filepath.Split(f)
		if rf, ok := parseRotated(filepath.Clean(dir), name); ok {
			return filepath.Join(dir, rf.base)
		}
		return filepath.Join(dir, logBase(name))
	}
	var logs []string
	byLog := map[string][]string{}
	for _, f := range all {
		l := logOf(f)
		if _, ok := byLog[l]; !ok {
			logs = append(logs, l)
		}
		byLog[l] = append(byLog[l], f)
	}
	files = map[string][]string{}
	for _, l := range logs {
		id, err := InstanceOf(byLog[l])
		if err != nil {
			id = "" // unreadable: Verify reports why
		}
		if _, ok := files[id]; !ok {
			instances = append(instances, id)
		}
		files[id] = append(files[id], byLog[l]...)
	}
	slices.Sort(instances)
	return instances, files, nil
}

// expandAll is Expand, but a directory may hold several logs (several
// replicas sharing it): all of their files are taken.
func expandAll(paths ...string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("reading the audit log: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("listing the audit log: %w", err)
		}
		for _, e := range entries {
			if n := e.Name(); e.Type().IsRegular() && !strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".log") {
				out = append(out, filepath.Join(p, n))
			}
		}
	}
	return Expand(out...)
}
