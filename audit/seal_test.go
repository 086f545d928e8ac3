package audit

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	auditKeyOnce sync.Once
	auditKey     *rsa.PrivateKey
	otherKey     *rsa.PrivateKey
)

// keys are made once per test binary: RSA generation is slow, and the
// keys are not under test (the daemon's tests seal with an HSM key).
func keys(t testing.TB) (audit, other *rsa.PrivateKey) {
	t.Helper()
	auditKeyOnce.Do(func() {
		var err error
		if auditKey, err = rsa.GenerateKey(rand.Reader, 2048); err == nil {
			otherKey, err = rsa.GenerateKey(rand.Reader, 2048)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	return auditKey, otherKey
}

// sealedLog writes records 1 (start) to n, checkpointing after each seq in
// at, and closes the log without a last checkpoint.
func sealedLog(t *testing.T, n int, at ...uint64) (string, *Checkpointer) {
	t.Helper()
	key, _ := keys(t)
	w, path := openLog(t, Options{NoSync: true})
	c, err := NewCheckpointer(w, CheckpointOptions{Key: key, Instance: "test-run"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; w.Stats().LastSeq < uint64(n); i++ {
		if _, err := w.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
		for _, seq := range at {
			if w.Stats().LastSeq == seq {
				if err := c.Checkpoint(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path, c
}

// rechain rewrites the chain from line i on, as someone who can write the
// file but lacks the audit key would after changing line i: every line
// verifies, and every prev matches.
func rechain(t *testing.T, ls [][]byte, i int) {
	t.Helper()
	prev := ""
	if i > 0 {
		r, err := parseLine(ls[i-1][:len(ls[i-1])-1])
		if err != nil {
			t.Fatal(err)
		}
		prev = r.Hash
	}
	for ; i < len(ls); i++ {
		r, err := parseLineUnchecked(ls[i][:len(ls[i])-1])
		if err != nil {
			t.Fatal(err)
		}
		r.Prev = prev
		line, err := encodeLine(&r)
		if err != nil {
			t.Fatal(err)
		}
		ls[i], prev = line, r.Hash
	}
}

func verifyBoth(t *testing.T, path string) (SealReport, error) {
	t.Helper()
	if _, err := Verify(path); err != nil {
		t.Fatalf("the chain itself must verify here: %v", err)
	}
	key, _ := keys(t)
	return VerifySeals(&key.PublicKey, path)
}

func TestCheckpointsSealTheRecordsBeforeThem(t *testing.T) {
	// Records 1-10, a checkpoint (11), records 12-20, a checkpoint (21),
	// records 22-24: the tail after the last checkpoint is unsealed.
	path, _ := sealedLog(t, 24, 10, 20)
	report, err := verifyBoth(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if report.Checkpoints != 2 || report.LastCheckpoint != 21 {
		t.Fatalf("report %+v, want two checkpoints, the last at 21", report)
	}
	if got := Ranges(report.Sealed); got != "1-21" {
		t.Errorf("sealed %s, want 1-21", got)
	}
	if got := Ranges(report.Unsealed); got != "22-24" {
		t.Errorf("unsealed %s, want 22-24", got)
	}
}

func TestCheckpointSkipsWhenNothingNew(t *testing.T) {
	key, _ := keys(t)
	w, path := openLog(t, Options{NoSync: true})
	c, err := NewCheckpointer(w, CheckpointOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := c.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if n := len(lines(t, path)); n != 2 {
		t.Fatalf("%d records after three checkpoints of one start record, want 2: a checkpoint seals nothing but checkpoints", n)
	}
}

// TestSealsCatchWhatTheChainCannot: each of these leaves a chain that
// verifies; only the checkpoints and the audit key show what happened.
func TestSealsCatchWhatTheChainCannot(t *testing.T) {
	_, other := keys(t)
	tests := []struct {
		name   string
		tamper func(t *testing.T, ls [][]byte) [][]byte
		kind   string // the Problem, or "" for an unsealed tail
		want   string
	}{
		{"a record appended with a recomputed chain", nil, "", "25"},
		{"a record rewritten before a checkpoint, the chain recomputed", func(t *testing.T, ls [][]byte) [][]byte {
			ls[4] = []byte(strings.Replace(string(ls[4]), `"client":"billing"`, `"client":"someone"`, 1))
			rechain(t, ls, 4)
			return ls
		}, ProblemEdited, "the records up to it were rewritten"},
		{"a checkpoint made with another key", func(t *testing.T, ls [][]byte) [][]byte {
			r, _ := parseLine(ls[20][:len(ls[20])-1]) // the checkpoint at 21
			if err := r.Seal.sign(other, r.Time); err != nil {
				t.Fatal(err)
			}
			ls[20], _ = encodeLine(&r)
			rechain(t, ls, 20)
			return ls
		}, ProblemForged, "names audit key"},
		{"a checkpoint's head changed", func(t *testing.T, ls [][]byte) [][]byte {
			ls[20] = []byte(strings.Replace(string(ls[20]), `"head_seq":20`, `"head_seq":19`, 1))
			rechain(t, ls, 20)
			return ls
		}, ProblemForged, "is forged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := sealedLog(t, 24, 10, 20)
			ls := lines(t, path)
			if tt.kind == "" {
				// Append a whole forged record, chained onto the last.
				ls = append(ls, nil)
				r := sample(99)
				r.Kind, r.Seq, r.Time = KindSignature, uint64(len(ls)), newClock().Now()
				line, err := encodeLine(&r)
				if err != nil {
					t.Fatal(err)
				}
				ls[len(ls)-1] = line
				rechain(t, ls, len(ls)-1)
			} else {
				ls = tt.tamper(t, ls)
			}
			writeFile(t, path, ls)
			report, err := verifyBoth(t, path)
			if tt.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := Ranges(report.Unsealed); !strings.Contains(got, tt.want) {
					t.Fatalf("unsealed %q, want the forged record %s among them", got, tt.want)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) || p.Kind != tt.kind || !strings.Contains(p.Detail, tt.want) {
				t.Fatalf("VerifySeals: %v, want a %s problem saying %q", err, tt.kind, tt.want)
			}
		})
	}
}

// TestNewRunDoesNotSealAnEarlierTail: a run that stopped without a last
// checkpoint leaves an unsealed tail; the next run's checkpoints vouch
// only for what it wrote, so the tail stays unsealed.
func TestNewRunDoesNotSealAnEarlierTail(t *testing.T) {
	key, _ := keys(t)
	path, _ := sealedLog(t, 12, 10) // 1-10, checkpoint 11, 12 unsealed
	w, err := Open(Options{Path: path, NoSync: true, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCheckpointer(w, CheckpointOptions{Key: key, Instance: "second-run"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(sample(50)); err != nil { // 14, after the start record 13
		t.Fatal(err)
	}
	if err := c.Checkpoint(); err != nil { // 15
		t.Fatal(err)
	}
	w.Close()
	report, err := verifyBoth(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if got := Ranges(report.Unsealed); got != "12" {
		t.Fatalf("unsealed %q, want 12: the first run's tail, which the second must not vouch for", got)
	}
	if got := Ranges(report.Sealed); got != "1-11, 13-15" {
		t.Fatalf("sealed %q, want 1-11, 13-15", got)
	}
}

func TestPartition(t *testing.T) {
	in, out := partition([]SeqRange{{5, 9}, {1, 3}, {4, 4}, {12, 12}}, 1, 14)
	if Ranges(in) != "1-9, 12" || Ranges(out) != "10-11, 13-14" {
		t.Fatalf("partition: sealed %s, unsealed %s", Ranges(in), Ranges(out))
	}
}

// TestSealsAcrossAGap: a checkpoint whose head was lost when an fsync
// failed cannot be compared with the log, so what it sealed counts as
// unsealed; the checkpoints after the gap seal what follows. Nothing
// panics on the records the gap took out.
func TestSealsAcrossAGap(t *testing.T) {
	key, _ := keys(t)
	w, path, d, _ := openFaulty(t, Options{})
	c, err := NewCheckpointer(w, CheckpointOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 3; i++ { // 2, 3 synced
		if _, err := w.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 4; i <= 5; i++ { // 4, 5 in the kernel only
		if _, err := w.AppendUnsynced(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	d.set(func(d *disk) { d.syncErr = syscall.EIO })
	if err := c.Checkpoint(); err == nil { // 6 fails: its fsync does
		t.Fatal("a checkpoint succeeded although its fsync failed")
	}
	d.repair()
	if _, err := w.Append(sample(9)); err != nil { // after the gap record
		t.Fatal(err)
	}
	if err := c.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// The disk kept only the synced records of the old file.
	old := rotatedFiles(t, path)[0]
	writeFile(t, old, lines(t, old)[:3])
	res, err := Verify(filepath.Dir(path))
	if err != nil || len(res.Gaps) != 1 {
		t.Fatalf("Verify = %+v, %v; want the one gap explained", res, err)
	}
	report, err := VerifySeals(&key.PublicKey, filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	// 1 start, 2-3 synced, 4-5 unsynced, 6 the failed checkpoint, 7 the
	// gap record, 8 a record, 9 a checkpoint. The chain cannot be followed
	// from 7 back to 3, so 9 vouches for 7-8 only.
	if got, want := Ranges(report.Sealed), "7-9"; got != want || report.LastCheckpoint != 9 {
		t.Fatalf("sealed %s (last checkpoint %d), want %s", got, report.LastCheckpoint, want)
	}
	if got, want := Ranges(report.Unsealed), "1-6"; got != want {
		t.Fatalf("unsealed %s, want %s: the records before the gap, kept or lost", got, want)
	}
}
