package audit

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// appendTo appends data to a file, as another process would.
func appendTo(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
}

// replaceFile puts data at path as a new file, the way editors and
// `sed -i` save: write beside, rename over.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestWatchNoticesTampering: when someone else deletes, replaces,
// truncates or appends to the active file while the Writer has it open,
// the next Append fails and the Writer takes no record until it is opened
// again; it writes a gap record at once in a new file, with what it knows,
// and after a restart Verify says what happened and what is lost.
//
// The log holds records 1-6 when it is changed; the gap record is 7.
func TestWatchNoticesTampering(t *testing.T) {
	tests := []struct {
		name             string
		tamper           func(t *testing.T, path string)
		cause            string
		from             uint64 // the gap record's FromSeq
		kept             string // what the file at the path was moved to, as a pattern
		lostFrom, lostTo uint64
		foreign          int64
		said             string // in the writer's error and the gap's detail
	}{
		{"deleted", func(t *testing.T, path string) { os.Remove(path) },
			CauseDeleted, 1, "", 1, 6, 0, "the active file " + "%s" + " (records 1-6, "},
		{"renamed away", func(t *testing.T, path string) { os.Rename(path, path+".bak") },
			CauseDeleted, 1, "", 1, 6, 0, "was renamed to audit.log.bak while the daemon had it open"},
		{"replaced by another file", func(t *testing.T, path string) { replaceFile(t, path, []byte("hello\n")) },
			CauseReplaced, 1, "audit.log.replaced.*", 1, 6, 0, "another file (6 bytes) took the place of the active file"},
		{"edited with sed -i", func(t *testing.T, path string) {
			data, _ := os.ReadFile(path)
			replaceFile(t, path, bytes.Replace(data, []byte("scope0004"), []byte("scope9999"), 1))
		}, CauseReplaced, 1, "audit.log.replaced.*", 1, 6, 0, " bytes) was deleted"},
		{"truncated in a line", func(t *testing.T, path string) {
			ls := lines(t, path)
			os.Truncate(path, int64(len(bytes.Join(ls[:3], nil))+20))
		}, CauseTruncated, 1, "audit.000000000001-000000000006.*.log", 4, 6, 0, "was truncated while the daemon had it open: it holds "},
		{"emptied", func(t *testing.T, path string) { os.Truncate(path, 0) },
			CauseTruncated, 1, "audit.000000000001-000000000006.*.log", 1, 6, 0, "it holds 0 of the "},
		{"appended to", func(t *testing.T, path string) { appendTo(t, path, []byte("not a record\n")) },
			CauseAppended, 0, "audit.000000000001-000000000006.*.log", 0, 0, 13, "13 bytes the daemon did not write were appended to the active file"},
		{"appended a record that chains on", func(t *testing.T, path string) {
			ls := lines(t, path)
			last, _ := parseLine(bytes.TrimSuffix(ls[len(ls)-1], []byte("\n")))
			forged := sample(99)
			forged.Seq, forged.Time, forged.Prev = last.Seq+1, time.Now(), last.Hash
			line, _ := encodeLine(&forged)
			appendTo(t, path, line)
		}, CauseAppended, 0, "audit.000000000001-000000000006.*.log", 0, 0, -1, "bytes the daemon did not write were appended"},
	}
	for _, tt := range tests {
		for _, notice := range []string{"Append", "Check", "Close"} {
			t.Run(tt.name+"/noticed by "+notice, func(t *testing.T) {
				w, path, _, evs := openFaulty(t, Options{})
				dir := filepath.Dir(path)
				for i := 2; i <= 6; i++ {
					if _, err := w.AppendUnsynced(sample(i)); err != nil {
						t.Fatal(err)
					}
				}
				tt.tamper(t, path)
				said := strings.ReplaceAll(tt.said, "%s", path)

				var err error
				switch notice {
				case "Append":
					_, err = w.Append(sample(7))
				case "Check":
					err = w.Check()
				case "Close":
					if err = w.Close(); err == nil {
						t.Fatal("Close of a log changed under it said nothing")
					}
				}
				if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), said) || !strings.Contains(err.Error(), "until the daemon is restarted") {
					t.Fatalf("%s after the file was changed = %v\nwant ErrUnavailable saying %q and what to do", notice, err, said)
				}
				if notice != "Close" {
					if st := w.Stats(); !st.Broken || !st.Final || st.Cause != tt.cause {
						t.Fatalf("Stats = %+v, want broken for good by %s", st, tt.cause)
					}
					// For good: no record, however long one waits.
					for range 3 {
						if _, err := w.Append(sample(8)); !errors.Is(err, ErrUnavailable) {
							t.Fatalf("a later Append = %v", err)
						}
					}
				}
				ev := evs.list()
				if len(ev) != 1 || !ev[0].Broken || !ev[0].Final || ev[0].Cause != tt.cause || ev[0].Gap == nil || ev[0].Gap.Seq != 7 {
					t.Fatalf("OnChange was told %+v, want one change: broken for good by %s, with gap record 7", ev, tt.cause)
				}

				// The evidence is on disk at once, before any restart.
				gap := firstRecordOf(t, path)
				if gap.Kind != KindGap || gap.Seq != 7 || gap.ToSeq != 6 || gap.FromSeq != tt.from || gap.Cause != tt.cause || !strings.Contains(gap.Reason, said) {
					t.Fatalf("the new file opens with %+v, want gap record 7 for %d-6, %s", gap, tt.from, tt.cause)
				}
				if tt.kept == "" {
					if gap.File != "" {
						t.Errorf("the gap record names %q as kept, but nothing was at the path", gap.File)
					}
				} else if ok, _ := filepath.Match(tt.kept, gap.File); !ok {
					t.Errorf("the file found at the path was kept as %q, want %s", gap.File, tt.kept)
				} else if _, err := os.Stat(filepath.Join(dir, gap.File)); err != nil {
					t.Errorf("the kept file: %v", err)
				}

				// A restart continues after the gap; Verify says what happened.
				w.Close()
				w2, err := Open(Options{Path: path})
				if err != nil {
					t.Fatalf("Open after the gap: %v", err)
				}
				w2.Close()
				res, err := Verify(dir)
				if err != nil {
					t.Fatalf("Verify = %v, want the gap explained", err)
				}
				if len(res.Gaps) != 1 || res.LastSeq != 8 {
					t.Fatalf("Verify = %+v, want one gap and records up to 8", res)
				}
				g := res.Gaps[0]
				foreign := tt.foreign
				if foreign < 0 { // the forged line's length
					foreign = g.Foreign
					if foreign < 200 {
						t.Errorf("the forged record was read: %d foreign bytes", foreign)
					}
				}
				if g.Cause != tt.cause || g.LostFrom != tt.lostFrom || g.LostTo != tt.lostTo || g.Foreign != foreign || !strings.Contains(g.Detail, said) {
					t.Errorf("gap = %+v\nwant %s, records %d-%d lost, %d foreign bytes, saying %q", g, tt.cause, tt.lostFrom, tt.lostTo, foreign, said)
				}
				var seqs []uint64
				if err := Query([]string{dir}, Filter{}, func(r Record) error {
					seqs = append(seqs, r.Seq)
					if r.RequestID == "req-0099" {
						t.Error("Query returned the forged record")
					}
					return nil
				}); err != nil {
					t.Fatalf("Query: %v", err)
				}
				if !slices.Contains(seqs, 7) || !slices.Contains(seqs, 8) {
					t.Errorf("Query found %v", seqs)
				}
			})
		}
	}
}

// TestWatchAfterRotation: a rotation gives the Writer a new file to watch,
// so that it is not mistaken for a deletion of the old one.
func TestWatchAfterRotation(t *testing.T) {
	w, path := openLog(t, Options{NoSync: true, MaxBytes: 1500})
	for i := 2; i <= 20; i++ {
		if _, err := w.Append(sample(i)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if st := w.Stats(); st.Rotations == 0 || st.Broken {
		t.Fatalf("Stats = %+v", st)
	}
	os.Remove(path)
	if err := w.Check(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Check after the rotated-to file was deleted = %v", err)
	}
}

// TestOpenFinishesInterruptedGap: a crash while a new file was being put
// in place leaves its draft, whose gap record is on disk: Open finishes
// the move, so that the gap stays on record. A draft without a whole gap
// record never was part of the log, and goes.
func TestOpenFinishesInterruptedGap(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, path, rotated string) // the crash's state, beside the draft
		draft  func(line []byte) []byte
		gaps   int
		refuse string
	}{
		{"crash before the renames", func(t *testing.T, path, rotated string) {}, nil, 1, ""},
		{"crash between the renames", func(t *testing.T, path, rotated string) { os.Rename(path, rotated) }, nil, 1, ""},
		{"crash while the draft was written", func(t *testing.T, path, rotated string) {}, func(l []byte) []byte { return l[:len(l)/2] }, 0, ""},
		{"the rotated name taken", func(t *testing.T, path, rotated string) { os.WriteFile(rotated, nil, 0o600) }, nil, 0, "exists already"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, 5)
			ls := lines(t, path)
			last, _ := parseLine(bytes.TrimSuffix(ls[4], []byte("\n")))
			rotated := rotatedName(path, 1, 5, time.Now())
			g := Record{Kind: KindGap, Seq: 6, Time: time.Now(), Prev: last.Hash, ToSeq: 5, FromSeq: 5, Cause: CauseFsync, Reason: "fsync after record 5 failed", File: filepath.Base(rotated)}
			line, _ := encodeLine(&g)
			if tt.draft != nil {
				line = tt.draft(line)
			}
			os.WriteFile(nextPath(path), line, 0o600)
			tt.before(t, path, rotated)

			w, err := Open(Options{Path: path})
			if tt.refuse != "" {
				if !errors.Is(err, ErrCannotContinue) || !strings.Contains(err.Error(), tt.refuse) {
					t.Fatalf("Open = %v, want a refusal saying %q", err, tt.refuse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			if _, err := os.Stat(nextPath(path)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the draft is still there: %v", err)
			}
			res, err := Verify(filepath.Dir(path))
			if err != nil || len(res.Gaps) != tt.gaps || res.LastSeq != 6+uint64(tt.gaps) {
				t.Fatalf("Verify = %+v, %v; want %d gaps", res, err, tt.gaps)
			}
		})
	}
}

// TestOpenRefusesAVanishedLog: a log that was opened before (its lock file
// is there) but has no record left was deleted or emptied while no Writer
// watched it; Open refuses to start it again at record 1 until the lock
// file is removed. A first Open that fails leaves no lock file behind.
func TestOpenRefusesAVanishedLog(t *testing.T) {
	for _, vanish := range []func(path string){
		func(path string) { os.Remove(path) },
		func(path string) { os.Truncate(path, 0) },
	} {
		path := writeLog(t, 4)
		vanish(path)
		_, err := Open(Options{Path: path})
		if !errors.Is(err, ErrCannotContinue) || !strings.Contains(err.Error(), "no record of it is left") || !strings.Contains(err.Error(), "remove "+path+".lock") {
			t.Fatalf("Open of a vanished log = %v", err)
		}
		for _, accept := range []func() Options{
			func() Options { return Options{Path: path, AcceptVanished: true} },
			func() Options { os.Remove(path); os.Remove(path + ".lock"); return Options{Path: path} },
		} {
			w, err := Open(accept())
			if err != nil {
				t.Fatalf("Open once the loss is accepted: %v", err)
			}
			if st := w.Stats(); st.LastSeq != 1 {
				t.Errorf("a new log starts at %d", st.LastSeq)
			}
			w.Close()
		}
	}

	path := filepath.Join(t.TempDir(), "audit.log")
	d := &disk{writeErr: errors.New("disk on fire")}
	_, err := Open(Options{Path: path, openFile: func(path string) (file, error) {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		return &faultyFile{File: f, d: d}, err
	}})
	if err == nil {
		t.Fatal("Open on a failing disk succeeded")
	}
	if _, err := os.Stat(path + ".lock"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed first Open left its lock file: %v", err)
	}
	w, err := Open(Options{Path: path})
	if err != nil {
		t.Fatalf("Open once the disk works: %v", err)
	}
	w.Close()
}
