package audit

import (
	"cmp"
	"crypto"
	"crypto/rsa"
	"fmt"
	"slices"
	"strings"
	"time"
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
// the records in order (as Query does, across gaps) and trusts their seq
// and hash. It returns the first problem as a *Problem (ProblemForged for
// a bad signature, ProblemEdited for a head the chain no longer has), and
// which records are sealed.
//
// It reads the log twice, to keep in memory only the checkpoints and the
// hashes of the records they name, however long the log.
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
	type checkpoint struct {
		seq  uint64
		time time.Time
		seal *Seal
	}
	var (
		first, last uint64
		checkpoints []checkpoint
		heads       = map[uint64]string{} // seq -> hash, for the heads named
		gaps        []uint64              // seqs of the gap records, in order
	)
	problem := func(c checkpoint, kind, detail string) error {
		return &Problem{File: paths[0], Seq: c.seq, Kind: kind, Detail: fmt.Sprintf("checkpoint %d %s", c.seq, detail)}
	}
	err = Query(paths, Filter{}, func(r Record) error {
		if first == 0 {
			first = r.Seq
		}
		last = r.Seq
		if r.Kind == KindGap {
			gaps = append(gaps, r.Seq)
		}
		if r.Kind != KindCheckpoint {
			return nil
		}
		c := checkpoint{r.Seq, r.Time, r.Seal}
		switch s := r.Seal; {
		case s == nil:
			return problem(c, ProblemForged, "carries no seal")
		case s.HeadSeq >= r.Seq || s.From > s.HeadSeq:
			return problem(c, ProblemEdited, fmt.Sprintf("seals records %d-%d, which cannot come before it", s.From, s.HeadSeq))
		}
		if err := r.Seal.verify(key, fingerprint, r.Time); err != nil {
			return problem(c, ProblemForged, "is forged: "+err.Error())
		}
		checkpoints = append(checkpoints, c)
		heads[r.Seal.HeadSeq] = ""
		return nil
	})
	if err != nil || first == 0 {
		return report, err
	}
	err = Query(paths, Filter{}, func(r Record) error {
		if _, named := heads[r.Seq]; named {
			heads[r.Seq] = r.Hash
		}
		return nil
	})
	if err != nil {
		return report, err
	}
	var sealed []SeqRange
	for _, c := range checkpoints {
		s := c.seal
		report.Checkpoints++
		report.LastCheckpoint = c.seq
		sealed = append(sealed, SeqRange{c.seq, c.seq}) // its own content is signed
		got := heads[s.HeadSeq]
		switch {
		case s.HeadSeq < first:
			continue // it seals only records in files no longer given
		case got == "":
			// Its head was lost in a gap: what it sealed cannot be compared
			// with what the log holds, so none of it counts as sealed.
			continue
		case got != s.HeadHash:
			return report, problem(c, ProblemEdited, fmt.Sprintf("sealed record %d with hash %s, and the log's record %d is another: the records up to it were rewritten", s.HeadSeq, short(s.HeadHash), s.HeadSeq))
		}
		// Across a gap the chain cannot be followed back (the records that
		// linked it are lost), so a checkpoint vouches only for the records
		// from the last gap record before its head on.
		from := max(s.From, first)
		for _, g := range gaps {
			if g <= s.HeadSeq {
				from = max(from, g)
			}
		}
		sealed = append(sealed, SeqRange{from, s.HeadSeq})
	}
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
