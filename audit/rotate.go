package audit

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// rotatedTime is the layout of the time in a rotated file's name: RFC 3339
// "basic" format, in UTC, which sorts as text and holds no colon.
const rotatedTime = "20060102T150405Z"

// rotatedPattern matches a rotated file's name: base, first seq, last seq.
var rotatedPattern = regexp.MustCompile(`^(.+)\.(\d{12,20})-(\d{12,20})\.(\d{8}T\d{6}Z)\.log$`)

// needsRotation says whether the active file is full or old enough to be
// rotated before a line of n bytes is appended, after the pending bytes
// of its group not written yet (whose first record has time
// pendingStart). An empty file never is: a record larger than MaxBytes
// still has to go somewhere.
func (w *Writer) needsRotation(pending int64, n int, now, pendingStart time.Time) bool {
	size := w.size + pending
	if size == 0 {
		return false
	}
	start := w.fileStart
	if w.size == 0 {
		start = pendingStart // the file's first record is in the group
	}
	return w.opts.MaxBytes > 0 && size+int64(n) > w.opts.MaxBytes ||
		w.opts.MaxAge > 0 && now.Sub(start) >= w.opts.MaxAge
}

// rotate renames the full active file to its rotated name and opens a new
// active file. The chain needs nothing else: the next record's prev is the
// last hash of the renamed file. Every step leaves the records in exactly
// one file, so a crash at any point loses and repeats none: the rename is
// atomic, the new file is made after it, and Open continues from the
// newest rotated file when the active file is missing or empty.
func (w *Writer) rotate(now time.Time) error {
	if err := w.f.Sync(); err != nil {
		// As after any failed fsync, the records since the last good one
		// may be gone: the file is not renamed as a full one, but ended by
		// a gap record like any other.
		w.syncFailed = true
		err = fmt.Errorf("fsync before rotating after record %d failed: %w", w.seq, err)
		w.breakIO(CauseFsync, err, w.seq, w.hash, now)
		return fmt.Errorf("rotating the audit log %s: %w", w.path, err)
	}
	w.synced = w.seq
	name := rotatedName(w.path, w.fileFirst, w.seq, now)
	// Rename replaces what it finds; a rotated file never is replaced.
	if _, err := os.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotating the audit log %s: %s exists already", w.path, name)
	}
	if err := os.Rename(w.path, name); err != nil {
		return fmt.Errorf("rotating the audit log: %w", err)
	}
	// The file was synced before the rename: closing it cannot lose a
	// record, so its error changes nothing.
	_ = w.f.Close()
	w.f = nil
	w.stats.Rotations++
	if err := syncDir(w.dir); err != nil {
		return fmt.Errorf("rotating the audit log %s: %w", w.path, err)
	}
	return w.openActive(true)
}

// rotatedName is the name a file holding records first to last gets when
// it is rotated at time t.
func rotatedName(active string, first, last uint64, t time.Time) string {
	return filepath.Join(filepath.Dir(active),
		fmt.Sprintf("%s.%012d-%012d.%s.log", logBase(active), first, last, t.UTC().Format(rotatedTime)))
}

// logBase is the part of the active file's name that its rotated files
// start with: audit.log → audit.
func logBase(active string) string {
	return strings.TrimSuffix(filepath.Base(active), ".log")
}

// rotatedFile is a rotated file, with the seqs its name says it holds.
type rotatedFile struct {
	path        string
	base        string
	first, last uint64
}

func parseRotated(dir, name string) (rotatedFile, bool) {
	m := rotatedPattern.FindStringSubmatch(name)
	if m == nil {
		return rotatedFile{}, false
	}
	first, err1 := strconv.ParseUint(m[2], 10, 64)
	last, err2 := strconv.ParseUint(m[3], 10, 64)
	if _, err3 := time.Parse(rotatedTime, m[4]); err1 != nil || err2 != nil || err3 != nil || first == 0 || last < first {
		return rotatedFile{}, false
	}
	return rotatedFile{path: filepath.Join(dir, name), base: m[1], first: first, last: last}, true
}

// newestRotated returns the rotated file of the active file's log that
// holds the highest records, or nil when it has none.
func newestRotated(active string) (*rotatedFile, error) {
	dir, base := filepath.Dir(active), logBase(active)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var newest *rotatedFile
	for _, e := range entries {
		if rf, ok := parseRotated(dir, e.Name()); ok && rf.base == base && e.Type().IsRegular() && (newest == nil || rf.last > newest.last) {
			newest = &rf
		}
	}
	return newest, nil
}

// syncDir makes a rename or a new file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// ErrNoLog is wrapped by the error of Files for a directory without a log.
var ErrNoLog = errors.New("no *.log file")

// Files returns the files of the audit log in dir: its rotated files in
// the order of their records, then its active file when it exists. It is
// an error for dir to hold no log, or the files of more than one (such as
// audit.log and other.log): then the files must be named.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing the audit log: %w", err)
	}
	rotated := map[string][]rotatedFile{}
	active := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") {
			continue
		}
		if rf, ok := parseRotated(dir, name); ok {
			rotated[rf.base] = append(rotated[rf.base], rf)
		} else if strings.HasSuffix(name, ".log") {
			active[logBase(name)] = filepath.Join(dir, name)
		}
	}
	bases := map[string]bool{}
	for b := range rotated {
		bases[b] = true
	}
	for b := range active {
		bases[b] = true
	}
	switch len(bases) {
	case 0:
		return nil, fmt.Errorf("%s holds no audit log (%w)", dir, ErrNoLog)
	case 1:
	default:
		names := make([]string, 0, len(bases))
		for b := range bases {
			names = append(names, b+".log")
		}
		slices.Sort(names)
		return nil, fmt.Errorf("%s holds more than one log (%s): give the files instead of the directory", dir, strings.Join(names, ", "))
	}
	var files []string
	for b := range bases {
		rfs := rotated[b]
		slices.SortFunc(rfs, func(x, y rotatedFile) int { return cmp.Compare(x.first, y.first) })
		for _, rf := range rfs {
			files = append(files, rf.path)
		}
		if a, ok := active[b]; ok {
			files = append(files, a)
		}
	}
	return files, nil
}

// Expand replaces each directory among paths by the files of its log (see
// Files), and drops a file named twice (as itself and in its directory,
// say). Verify and Query expand their paths themselves; Expand is for a
// caller that wants both to read the very same files.
func Expand(paths ...string) ([]string, error) {
	if len(paths) == 0 {
		return nil, errors.New("no audit log files given")
	}
	var files []string
	var seen []os.FileInfo
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("reading the audit log: %w", err)
		}
		found := []string{p}
		if st.IsDir() {
			if found, err = Files(p); err != nil {
				return nil, err
			}
		}
		for _, f := range found {
			st, err := os.Stat(f)
			if err != nil {
				return nil, fmt.Errorf("reading the audit log: %w", err)
			}
			if slices.ContainsFunc(seen, func(s os.FileInfo) bool { return os.SameFile(s, st) }) {
				continue
			}
			seen = append(seen, st)
			files = append(files, f)
		}
	}
	return files, nil
}
