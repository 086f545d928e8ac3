package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Record kinds.
const (
	KindStart     = "start"     // a Writer opened the log: the daemon (re)started
	KindDecision  = "decision"  // a policy decision on a request
	KindSignature = "signature" // a grant was signed with the HSM key
	KindOutcome   = "outcome"   // how a token request ended
	// KindKey is a change to an environment's keys: a key made in the HSM
	// (Outcome "created") or added to the integration's registered keys
	// at Digdir ("registered"), with its KeyLabel and KID.
	KindKey = "key"
	// KindCheckpoint seals the records before it with the audit key held
	// in the HSM; see Seal.
	KindCheckpoint = "checkpoint"
	// KindGap opens a new file after the Writer lost its hold on the one
	// before: a write or fsync failed, or someone else deleted, replaced,
	// truncated or appended to it. It is the first record of its file and
	// says which records may be lost (FromSeq to ToSeq) and why (Cause);
	// see the package documentation.
	KindGap = "gap"
)

// Gap causes: why a KindGap record was written. Write and fsync failures
// are the disk's; the Writer opens a new file by itself once the disk
// takes a synced record again. The others are someone else's doing with
// the file while the Writer had it open; the Writer then takes no record
// until the daemon is restarted.
const (
	CauseWrite     = "write"     // writing a record failed
	CauseFsync     = "fsync"     // an fsync failed: records since the last good one may be gone from the disk
	CauseDeleted   = "deleted"   // the active file was deleted or renamed: no file at its path
	CauseReplaced  = "replaced"  // another file took the active file's path
	CauseTruncated = "truncated" // the active file became shorter than the Writer wrote it
	CauseAppended  = "appended"  // the active file became longer: someone else wrote to it
)

// Record is one line of the audit log. Its fields are marshalled in the
// order they are declared, and that order is part of the file format.
//
// A record has no field for the signed grant, the access token or the PIN,
// and must never get one: the audit log is kept for years and read by
// people who may not hold a token. A grant is named by its jti, the key by
// its label and the SHA-256 of its certificate. Callers must keep secrets
// out of the free-text fields (Reason, Error) too.
type Record struct {
	Seq         uint64     `json:"seq"`  // 1, 2, 3 … across rotated files; set by Append
	Time        time.Time  `json:"time"` // UTC, RFC 3339 with nanoseconds; Append sets it when zero
	Kind        string     `json:"kind"` // one of the Kind constants
	RequestID   string     `json:"request_id,omitempty"`
	Transport   string     `json:"transport,omitempty"`  // mtls or unix
	Identities  []string   `json:"identities,omitempty"` // the caller's identities
	Client      string     `json:"client,omitempty"`     // the policy client the caller is
	Method      string     `json:"method,omitempty"`     // the gRPC method
	Environment string     `json:"environment,omitempty"`
	Scopes      []string   `json:"scopes,omitempty"`
	ConsumerOrg string     `json:"consumer_org,omitempty"`
	Resource    string     `json:"resource,omitempty"`
	Decision    string     `json:"decision,omitempty"` // allow or deny
	Rule        string     `json:"rule,omitempty"`     // the policy rules, as FILE:LINE
	Reason      string     `json:"reason,omitempty"`
	GrantJTI    string     `json:"grant_jti,omitempty"` // the signed grant's jti
	KeyLabel    string     `json:"key_label,omitempty"`
	CertSHA256  string     `json:"cert_sha256,omitempty"`
	Outcome     string     `json:"outcome,omitempty"` // issued, cached, rate_limited, or a failure outcome of tokenservice.Classify
	MPCode      string     `json:"mp_code,omitempty"`
	Error       string     `json:"error,omitempty"`
	TokenExpiry *time.Time `json:"token_expires_at,omitempty"`
	Seal        *Seal      `json:"seal,omitempty"` // on KindCheckpoint only
	// Count is how many calls the record stands for when they were
	// counted rather than written one by one (so that no caller can fill
	// the disk): calls identical but for their request ids, made since the
	// previous record of the same calls; RequestID is the last one's.
	// Absent (0): the record is of one call, as every record written
	// before the field existed is.
	Count uint64 `json:"count,omitempty"`
	// SystemUserOrg is the customer whose Altinn system user the request
	// was for (GetTokenRequest.system_user.org), SystemUserRef the
	// external reference it named, if any: at most 128 bytes of printable
	// ASCII. Both absent for a request without a system user, as in every
	// record written before the fields existed. (They follow count rather
	// than consumer_org: fields are added to the format at the end.)
	SystemUserOrg string `json:"system_user_org,omitempty"`
	SystemUserRef string `json:"system_user_ref,omitempty"`
	// On KindGap only. FromSeq is the first record that may be lost (0:
	// none is), ToSeq the last record written before the gap, always
	// Seq-1. Cause is one of the Cause constants. File is the name the
	// file that was at the active path was given when this record's file
	// took its place ("" when there was none), Size the bytes the Writer
	// had written to its file.
	FromSeq uint64 `json:"from_seq,omitempty"`
	ToSeq   uint64 `json:"to_seq,omitempty"`
	Cause   string `json:"cause,omitempty"`
	File    string `json:"file,omitempty"`
	Size    int64  `json:"size,omitempty"`
	// KID is a registered key's kid: on KindKey, and on KindSignature for
	// a grant that names its key by kid. (After size: fields
	// are added to the format at the end, before instance and prev, which
	// the Writer adds.)
	KID string `json:"kid,omitempty"`
	// Instance names the replica that wrote the record (the daemon's
	// audit.instance; see Options.Instance): with several replicas each
	// keeps a chain of its own, and a record says whose it is. Absent in
	// records written before the field existed, and by a Writer given none.
	Instance string `json:"instance,omitempty"`
	Prev     string `json:"prev"` // hex SHA-256 of the previous record; "" for record 1; set by Append

	// Hash is the hex SHA-256 of this record's line without its hash (see
	// the package documentation). It is written at the end of the line,
	// not marshalled with the fields, so encoding/json ignores it. Append
	// and Verify set it; Query passes on what the line states, unchecked.
	Hash string `json:"-"`

	line []byte // as in the file; see Line
}

// Line returns the record's line as it is in the file, newline included:
// as Append wrote it, or as Query read it (nil for a Record made
// otherwise). Hand on this line, rather than marshalling the record again,
// and it can still be checked against its hash. It must not be modified.
func (r Record) Line() []byte { return r.line }

// MaxLineBytes bounds a line of the log, its newline included, so that a
// damaged or hostile file cannot make a reader hold gigabytes. Real
// records are well under a kilobyte.
const MaxLineBytes = 1 << 20

// hashSuffix is how every line ends, around the 64 hex digits of its hash.
const (
	hashPrefix    = `,"hash":"`
	hashSuffixLen = len(hashPrefix) + sha256.Size*2 + len(`"}`)
)

// encodeLine fills r.Hash and returns r's line, newline included. The
// caller has set Seq, Time and Prev; times are made UTC so that the file
// reads the same wherever it was written.
func encodeLine(r *Record) ([]byte, error) {
	normalize(r)
	fb := getFieldsBuf()
	defer putFieldsBuf(fb)
	fields, err := encodeFields((*fb)[:0], r)
	*fb = fields
	if err != nil {
		return nil, err
	}
	line, sum, err := appendLine(make([]byte, 0, len(fields)+len(r.Prev)+128+hashSuffixLen), r, fields, []byte(r.Prev))
	if err != nil {
		return nil, err
	}
	r.Hash = hex.EncodeToString(sum[:])
	r.line = line
	return line, nil
}

// normalize makes r's times UTC, so that the file reads the same wherever
// it was written. The token expiry is a copy: the caller's value is left
// alone.
func normalize(r *Record) {
	r.Time = r.Time.UTC()
	if r.TokenExpiry != nil {
		t := r.TokenExpiry.UTC()
		r.TokenExpiry = &t
	}
}

// appendLine appends r's line, newline included, to dst, and returns the
// line's hash: the body (appendBody), whose '}' becomes
// `,"hash":"<hex>"}`. On error dst is returned as it was.
func appendLine(dst []byte, r *Record, fields, prev []byte) ([]byte, [sha256.Size]byte, error) {
	start := len(dst)
	dst, err := appendBody(dst, r, fields, prev)
	if err != nil {
		return dst[:start], [sha256.Size]byte{}, err
	}
	sum := sha256.Sum256(dst[start:])
	dst = append(dst[:len(dst)-1], hashPrefix...)
	dst = hex.AppendEncode(dst, sum[:])
	dst = append(dst, `"}`+"\n"...)
	return dst, sum, nil
}

// lineError is what is wrong with one line on its own, before the chain
// is considered.
type lineError struct {
	kind   string // ProblemMalformed or ProblemEdited
	seq    uint64 // the seq the line states, when it could be read
	detail string
}

func (e *lineError) Error() string { return e.detail }

// splitLine separates a line (without its newline) into the bytes that
// were hashed and the hash the line states, or reports that the line does
// not end as a record line must.
func splitLine(line []byte) (body []byte, stated string, ok bool) {
	n := len(line) - hashSuffixLen
	if n < 1 || line[0] != '{' || !bytes.HasPrefix(line[n:], []byte(hashPrefix)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		return nil, "", false
	}
	h := line[n+len(hashPrefix) : len(line)-2]
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nil, "", false
		}
	}
	body = make([]byte, n+1)
	copy(body, line[:n])
	body[n] = '}'
	return body, string(h), true
}

// parseLine checks one line (without its newline) on its own: that it
// ends in a well-formed hash, that the hash is the SHA-256 of the rest,
// and that the rest is a record. It returns the record with Hash set, or
// a *lineError.
func parseLine(line []byte) (Record, error) {
	body, stated, ok := splitLine(line)
	if !ok {
		return Record{}, &lineError{kind: ProblemMalformed, detail: `not an audit record: a record line ends in ,"hash":"<64 lowercase hex digits>"}`}
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != stated {
		// Say which record it was, if its seq can still be read.
		var r struct{ Seq uint64 }
		_ = json.Unmarshal(body, &r)
		return Record{}, &lineError{kind: ProblemEdited, seq: r.Seq, detail: "its hash does not match its content"}
	}
	r, err := decodeBody(body)
	if err != nil {
		return Record{}, err
	}
	r.Hash = stated
	return r, nil
}

// parseLineUnchecked reads a line's record without checking its hash, for
// Query and for ordering files before they are verified.
func parseLineUnchecked(line []byte) (Record, error) {
	body, stated, ok := splitLine(line)
	if !ok {
		return Record{}, &lineError{kind: ProblemMalformed, detail: `not an audit record: a record line ends in ,"hash":"<64 lowercase hex digits>"}`}
	}
	r, err := decodeBody(body)
	if err != nil {
		return Record{}, err
	}
	r.Hash = stated
	return r, nil
}

// decodeBody reads the hashed part of a line. Fields this version does not
// know are allowed: the hash covers them, and a newer writer may add some.
func decodeBody(body []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(body, &r); err != nil {
		return Record{}, &lineError{kind: ProblemMalformed, detail: fmt.Sprintf("not an audit record: %v", err)}
	}
	if r.Seq == 0 || r.Kind == "" || r.Time.IsZero() {
		return Record{}, &lineError{kind: ProblemMalformed, seq: r.Seq, detail: "not an audit record: seq, time or kind is missing"}
	}
	if r.Prev != "" && !isHash(r.Prev) {
		return Record{}, &lineError{kind: ProblemMalformed, seq: r.Seq, detail: "not an audit record: prev is not a SHA-256 in lowercase hex"}
	}
	return r, nil
}

func isHash(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// errLineTooLong is returned by lineReader for a line over MaxLineBytes.
var errLineTooLong = errors.New("line is longer than the 1 MiB a record may have")

// lineReader reads a log line by line, counting lines, with no line longer
// than MaxLineBytes held in memory.
type lineReader struct {
	r    *bufio.Reader
	line int // the number of the line last returned, from 1
	buf  []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line without its newline, and whether it had one.
// At the end of the input it returns io.EOF and no line. A line over
// MaxLineBytes is skipped, and errLineTooLong returned for it. The line is
// only valid until the next call.
func (lr *lineReader) next() (line []byte, complete bool, err error) {
	lr.buf = lr.buf[:0]
	tooLong := false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if !tooLong && len(lr.buf)+len(chunk) > MaxLineBytes {
			tooLong, lr.buf = true, lr.buf[:0]
		}
		if !tooLong {
			lr.buf = append(lr.buf, chunk...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil || errors.Is(err, io.EOF) && (tooLong || len(lr.buf) > 0):
			lr.line++
			if tooLong {
				return nil, false, errLineTooLong
			}
			if err == nil {
				return lr.buf[:len(lr.buf)-1], true, nil
			}
			return lr.buf, false, nil
		default:
			return nil, false, err // io.EOF at the end, or a read error
		}
	}
}
