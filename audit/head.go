package audit

import (
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// KindHeadGap is the record a daemon writes right after its start record
// when its operator accepted starting on a log that does not reach the
// HSM's head (`portvakt serve --accept-audit-gap`): its Reason says what
// was missing. The gap is then part of the sealed story.
const KindHeadGap = "head-gap"

// HeadLabel is the label of the data object on the HSM token that holds
// the log's head: the latest checkpoint's seal. Someone who can write the
// log's files but not log in to the HSM cannot move it back, so a log that
// ends before it, was deleted or was rewritten shows against it.
const HeadLabel = "portvakt-audit-head"

// Head is the latest checkpoint, as kept on the HSM.
type Head struct {
	// Checkpoint is the checkpoint record's seq.
	Checkpoint uint64    `json:"checkpoint"`
	Time       time.Time `json:"time"`
	Seal       Seal      `json:"seal"`
}

// HeadOf is the head a checkpoint record makes.
func HeadOf(r Record) (Head, error) {
	if r.Kind != KindCheckpoint || r.Seal == nil {
		return Head{}, fmt.Errorf("record %d is no checkpoint", r.Seq)
	}
	return Head{Checkpoint: r.Seq, Time: r.Time.UTC(), Seal: *r.Seal}, nil
}

// Marshal encodes the head for the HSM.
func (h Head) Marshal() []byte {
	b, _ := json.Marshal(h) // plain fields: cannot fail
	return b
}

// LatestHead decodes the values of the head object and returns the one
// with the highest checkpoint (an interrupted write leaves two). ok is
// false when there is none.
func LatestHead(values [][]byte) (head Head, ok bool, err error) {
	for _, v := range values {
		var h Head
		if err := json.Unmarshal(v, &h); err != nil {
			return Head{}, false, fmt.Errorf("the audit head on the HSM does not decode: %w", err)
		}
		if !ok || h.Checkpoint > head.Checkpoint {
			head, ok = h, true
		}
	}
	return head, ok, nil
}

// String says what the head is, in a clause.
func (h Head) String() string {
	return fmt.Sprintf("checkpoint %d (%s, instance %s) sealing records to %d, hash %s",
		h.Checkpoint, h.Time.Format(time.RFC3339), h.Seal.Instance, h.Seal.HeadSeq, short(h.Seal.HeadHash))
}

// ProblemBehindHead: the log does not reach, or no longer holds, the head
// the HSM keeps: records were cut from its end, the log was deleted or
// replaced, or rewritten.
const ProblemBehindHead = "behind the HSM's head"

// CheckHead checks the log in paths against the HSM's head: the head must
// be signed by the audit key, and the log must hold its sealed record with
// its hash. With public nil the signature is not checked (the daemon at
// start: the head is on its own HSM, behind its login).
func CheckHead(h Head, public crypto.PublicKey, paths ...string) error {
	if public != nil {
		key, ok := public.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("the audit public key is a %T; checkpoints are signed with RSA", public)
		}
		fingerprint, err := KeyFingerprint(key)
		if err != nil {
			return err
		}
		if err := h.Seal.verify(key, fingerprint, h.Time); err != nil {
			return fmt.Errorf("the audit head on the HSM: %w", err)
		}
	}
	want := h.Seal.HeadSeq
	var found *Record
	last := uint64(0)
	files, err := Expand(paths...)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrNoLog):
		files = nil // a deleted log is the clearest case of all
	case err != nil:
		return err
	}
	if len(files) > 0 {
		err = Query(files, Filter{}, func(r Record) error {
			last = r.Seq
			if r.Seq == want {
				found = &r
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	where := paths[0]
	switch {
	case found == nil && last < want:
		return &Problem{File: where, Seq: want, Kind: ProblemBehindHead, Detail: fmt.Sprintf(
			"the log ends at record %d, but the HSM's head is %s: records %d-%d were cut from the log, or the log was deleted or replaced",
			last, h, last+1, want)}
	case found == nil:
		return &Problem{File: where, Seq: want, Kind: ProblemBehindHead, Detail: fmt.Sprintf(
			"the log has no record %d, which the HSM's head (%s) seals", want, h)}
	case found.Hash != h.Seal.HeadHash:
		return &Problem{File: where, Seq: want, Kind: ProblemBehindHead, Detail: fmt.Sprintf(
			"record %d is not the one the HSM's head (%s) seals: the log was rewritten or replaced", want, h)}
	}
	return nil
}
