package main

import (
	"errors"
	"time"

	"github.com/portvakt/portvakt/audit"
)

// auditVerifyJSON is what `audit verify --json` prints: the verdict over
// every chain, and each chain's own.
type auditVerifyJSON struct {
	// Verdict is ok, unsealed, gaps or failed, the gravest of the
	// chains'; the exit status is 0, 4, 5 or 1 with it.
	Verdict   string        `json:"verdict"`
	Instances []chainReport `json:"instances"`
}

// chainReport is one chain's verdict; verify fills it as it checks.
type chainReport struct {
	// Instance is the replica whose chain this is, "" for records
	// without an instance id (or a single log).
	Instance string    `json:"instance"`
	Verdict  string    `json:"verdict"`
	Files    int       `json:"files"`
	Records  int       `json:"records"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	LastHash string    `json:"last_hash"`
	Gaps     []gapJSON `json:"gaps"`
	// ExpectLastHash and ExpectMinSeq are the anchors given, held.
	ExpectLastHash string `json:"expect_last_hash,omitempty"`
	ExpectMinSeq   uint64 `json:"expect_min_seq,omitempty"`
	// Head is the HSM's head the log reaches (with --token); HeadMissing
	// says the token holds none.
	Head        *audit.Head `json:"head,omitempty"`
	HeadMissing bool        `json:"head_missing,omitempty"`
	// Seals is the checkpoints' verdict (with --public-key).
	Seals *sealsJSON `json:"seals,omitempty"`
	// Problem is the first problem found, when the chain failed.
	Problem *problemJSON `json:"problem,omitempty"`
}

type gapJSON struct {
	File     string    `json:"file"`
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Cause    string    `json:"cause"`
	FromSeq  uint64    `json:"from_seq"`
	ToSeq    uint64    `json:"to_seq"`
	LostFrom uint64    `json:"lost_from"`
	LostTo   uint64    `json:"lost_to"`
	Detail   string    `json:"detail"`
}

type sealsJSON struct {
	KeySHA256   string `json:"key_sha256"`
	Checkpoints int    `json:"checkpoints"`
	Sealed      string `json:"sealed"`   // ranges, such as 1-40,42
	Unsealed    string `json:"unsealed"` // ranges; "" when every record is sealed
}

type problemJSON struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Message string `json:"message"`
}

// verdictOf names the row of the exit status table that err falls in.
func verdictOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case isUnsealed(err):
		return "unsealed"
	case isGaps(err):
		return "gaps"
	}
	return "failed"
}

// finish records the chain's verdict, and its problem when it failed.
func (r *chainReport) finish(err error) {
	r.Verdict = verdictOf(err)
	if r.Verdict != "failed" {
		return
	}
	var p *audit.Problem
	if errors.As(err, &p) {
		r.Problem = &problemJSON{File: p.File, Line: p.Line, Seq: p.Seq, Kind: p.Kind, Message: err.Error()}
		return
	}
	r.Problem = &problemJSON{Message: err.Error()}
}

func (r *chainReport) setResult(res audit.VerifyResult) {
	r.Files, r.Records, r.FirstSeq, r.LastSeq, r.LastHash = res.Files, res.Records, res.FirstSeq, res.LastSeq, res.LastHash
	for _, g := range res.Gaps {
		r.Gaps = append(r.Gaps, gapJSON{g.File, g.Seq, g.Time, g.Cause, g.FromSeq, g.ToSeq, g.LostFrom, g.LostTo, g.Detail})
	}
}
