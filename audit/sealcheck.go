package audit

import (
	"cmp"
	"crypto"
	"crypto/rsa"
	"fmt"
	"slices"
	"strings"
)

// ProblemForged: a checkpoint whose signature does not verify against the
// audit public key: someone without the key wrote it.
const ProblemForged = "forged"

// SealReport says which records checkpoints vouch for.
type SealReport struct {
	Checkpoints int
	// Sealed and Unsealed are the log's records in ranges; every record
	// is in one or the other. Unsealed records are in the chain (Verify
	// checked it) but no checkpoint of the daemon that wrote them vouches
	// for them: the tail after the last checkpoint, what a run left when it
	// stopped without a clean shutdown, or what someone who could write the
	// file added.
	Sealed, Unsealed []SeqRange
	// LastCheckpoint is the seq of the last checkpoint record, 0 if none.
	LastCheckpoint uint64
}

// SeqRange is the records From to To, both included.
type SeqRange struct{ From, To uint64 }

func (r SeqRange) String() string {
	if r.From == r.To {
		return fmt.Sprintf("%d", r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// Ranges prints ranges as "1-40, 42".
func Ranges(rs []SeqRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}

// VerifySeals checks every checkpoint in the log against the audit public
// key: its signature, and that its head is the record the chain has at
// that seq. Run it after VerifyWith has found the chain intact: it reads
// the records in order and trusts their seq and hash. It returns the first
// problem as a *Problem (ProblemForged for a bad signature, ProblemEdited
// for a head the chain no longer has), and which records are sealed.
func VerifySeals(public crypto.PublicKey, paths ...string) (SealReport, error) {
	var report SealReport
	key, ok := public.(*rsa.PublicKey)
	if !ok {
		return report, fmt.Errorf("the audit public key is a %T; checkpoints are signed with RSA", public)
	}
	fingerprint, err := KeyFingerprint(key)
	if err != nil {
		return report, err
	}
	var (
		first  uint64
		hashes []string // hashes[seq-first]
		sealed []SeqRange
	)
	files, err := Expand(paths...)
	if err != nil {
		return report, err
	}
	ordered, err := orderFiles(files)
	if err != nil {
		return report, err
	}
	for _, path := range ordered {
		n := 0
		err := queryFile(path, Filter{}, func(r Record) error {
			n++
			if first == 0 {
				first = r.Seq
			}
			hashes = append(hashes, r.Hash)
			if r.Kind != KindCheckpoint {
				return nil
			}
			problem := func(kind, detail string) error {
				return &Problem{File: path, Seq: r.Seq, Kind: kind, Detail: fmt.Sprintf("checkpoint %d %s", r.Seq, detail)}
			}
			s := r.Seal
			switch {
			case s == nil:
				return problem(ProblemForged, "carries no seal")
			case s.HeadSeq >= r.Seq || s.From > s.HeadSeq:
				return problem(ProblemEdited, fmt.Sprintf("seals records %d-%d, which cannot come before it", s.From, s.HeadSeq))
			}
			if err := s.verify(key, fingerprint, r.Time); err != nil {
				return problem(ProblemForged, "is forged: "+err.Error())
			}
			if s.HeadSeq >= first && hashes[s.HeadSeq-first] != s.HeadHash {
				return problem(ProblemEdited, fmt.Sprintf("sealed record %d with hash %s, and the log's record %d is another: the records up to it were rewritten", s.HeadSeq, short(s.HeadHash), s.HeadSeq))
			}
			report.Checkpoints++
			report.LastCheckpoint = r.Seq
			sealed = append(sealed, SeqRange{max(s.From, first), s.HeadSeq}, SeqRange{r.Seq, r.Seq})
			return nil
		})
		if err != nil {
			return report, err
		}
	}
	if first == 0 {
		return report, nil
	}
	last := first + uint64(len(hashes)) - 1
	report.Sealed, report.Unsealed = partition(sealed, first, last)
	return report, nil
}

// partition merges the sealed ranges and returns them with their
// complement in [first, last].
func partition(sealed []SeqRange, first, last uint64) (in, out []SeqRange) {
	slices.SortFunc(sealed, func(a, b SeqRange) int { return cmp.Compare(a.From, b.From) })
	for _, r := range sealed {
		r.From, r.To = max(r.From, first), min(r.To, last)
		if r.From > r.To {
			continue
		}
		if n := len(in); n > 0 && r.From <= in[n-1].To+1 {
			in[n-1].To = max(in[n-1].To, r.To)
			continue
		}
		in = append(in, r)
	}
	next := first
	for _, r := range in {
		if r.From > next {
			out = append(out, SeqRange{next, r.From - 1})
		}
		next = r.To + 1
	}
	if next <= last {
		out = append(out, SeqRange{next, last})
	}
	return in, out
}
