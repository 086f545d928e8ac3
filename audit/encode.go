package audit

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// A record's body is encoded by hand, field by field, into bytes that are
// exactly those json.Marshal makes of the Record (TestEncodeMatchesJSON
// and FuzzEncode hold it to that): the hash is over the bytes, so old
// logs, new logs and every verifier keep agreeing, while a record costs no
// reflection and no allocation. A field added to Record must be added
// here too, in its place (TestEncodeKnowsEveryField fails until it is).
//
// The body is made in two parts. The fields a caller gives (kind to size)
// are encoded by the caller's goroutine, before it queues its record
// (encodeFields): callers encode in parallel. The Writer, in the order of
// the chain, then puts seq and time before them and instance and prev after
// them, and hashes the whole (appendLine).

// encodeFields appends the fields from kind to size of r, as json.Marshal
// writes them after `"time":...,`, to dst.
func encodeFields(dst []byte, r *Record) ([]byte, error) {
	dst = appendKey(dst, `"kind":`, r.Kind)
	dst = appendOptString(dst, `,"request_id":`, r.RequestID)
	dst = appendOptString(dst, `,"transport":`, r.Transport)
	dst = appendOptStrings(dst, `,"identities":`, r.Identities)
	dst = appendOptString(dst, `,"client":`, r.Client)
	dst = appendOptString(dst, `,"method":`, r.Method)
	dst = appendOptString(dst, `,"environment":`, r.Environment)
	dst = appendOptStrings(dst, `,"scopes":`, r.Scopes)
	dst = appendOptString(dst, `,"consumer_org":`, r.ConsumerOrg)
	dst = appendOptString(dst, `,"resource":`, r.Resource)
	dst = appendOptString(dst, `,"decision":`, r.Decision)
	dst = appendOptString(dst, `,"rule":`, r.Rule)
	dst = appendOptString(dst, `,"reason":`, r.Reason)
	dst = appendOptString(dst, `,"grant_jti":`, r.GrantJTI)
	dst = appendOptString(dst, `,"key_label":`, r.KeyLabel)
	dst = appendOptString(dst, `,"cert_sha256":`, r.CertSHA256)
	dst = appendOptString(dst, `,"outcome":`, r.Outcome)
	dst = appendOptString(dst, `,"mp_code":`, r.MPCode)
	dst = appendOptString(dst, `,"error":`, r.Error)
	if r.TokenExpiry != nil {
		var err error
		dst = append(dst, `,"token_expires_at":`...)
		if dst, err = appendTime(dst, r.TokenExpiry.UTC()); err != nil {
			return dst, fmt.Errorf("encoding audit record: token_expires_at: %w", err)
		}
	}
	if r.Seal != nil {
		// Only on a checkpoint, a few a minute: encoding/json's own bytes
		// for it, which are what it writes for the field.
		b, err := json.Marshal(r.Seal)
		if err != nil {
			return dst, fmt.Errorf("encoding audit record: seal: %w", err)
		}
		dst = append(dst, `,"seal":`...)
		dst = append(dst, b...)
	}
	dst = appendOptUint(dst, `,"count":`, r.Count)
	dst = appendOptString(dst, `,"system_user_org":`, r.SystemUserOrg)
	dst = appendOptString(dst, `,"system_user_ref":`, r.SystemUserRef)
	dst = appendOptUint(dst, `,"from_seq":`, r.FromSeq)
	dst = appendOptUint(dst, `,"to_seq":`, r.ToSeq)
	dst = appendOptString(dst, `,"cause":`, r.Cause)
	dst = appendOptString(dst, `,"file":`, r.File)
	if r.Size != 0 {
		dst = append(dst, `,"size":`...)
		dst = strconv.AppendInt(dst, r.Size, 10)
	}
	dst = appendOptString(dst, `,"kid":`, r.KID)
	return dst, nil
}

// appendBody appends json.Marshal(r) to dst: seq and time, the fields
// encoded by encodeFields (fields), instance, and prev as given: the
// previous record's hash in lowercase hex, or empty, which needs no
// escaping (the Writer holds it as bytes). r.Time must be UTC.
func appendBody(dst []byte, r *Record, fields []byte, prev []byte) ([]byte, error) {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, `,"time":`...)
	dst, err := appendTime(dst, r.Time)
	if err != nil {
		return dst, fmt.Errorf("encoding audit record %d: time: %w", r.Seq, err)
	}
	dst = append(dst, ',')
	dst = append(dst, fields...)
	dst = appendOptString(dst, `,"instance":`, r.Instance)
	dst = append(dst, `,"prev":"`...)
	dst = append(dst, prev...)
	return append(dst, `"}`...), nil
}

// appendTime appends t as time.Time's MarshalJSON does, refusing, as it
// does, a year that RFC 3339 cannot write.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		_, err := t.MarshalJSON() // its own words for it
		return dst, err
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), nil
}

func appendKey(dst []byte, key, v string) []byte {
	dst = append(dst, key...)
	return appendJSONString(dst, v)
}

func appendOptString(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	return appendKey(dst, key, v)
}

func appendOptStrings(dst []byte, key string, vs []string) []byte {
	if len(vs) == 0 {
		return dst
	}
	dst = append(dst, key...)
	dst = append(dst, '[')
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, v)
	}
	return append(dst, ']')
}

func appendOptUint(dst []byte, key string, v uint64) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, key...)
	return strconv.AppendUint(dst, v, 10)
}

// appendJSONString appends s quoted as encoding/json quotes strings by
// default: `"` and `\` escaped, control characters as \b, \f, \n, \r, \t
// or \u00XX, the HTML characters <, > and & as \u003c, \u003e and \u0026,
// U+2028 and U+2029 as \u2028 and \u2029, and each byte that is not
// UTF-8 as \ufffd. (strconv.Quote differs on all but the first.)
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonSafe says which ASCII bytes appendJSONString copies as they are:
// one load per byte, where the six comparisons it stands for were half
// of a record's encoding.
var jsonSafe = func() (safe [utf8.RuneSelf]bool) {
	for b := range safe {
		safe[b] = b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return safe
}()

// maxPooledFields bounds the buffers fieldsPool keeps: a record's fields
// are a few hundred bytes, and one near MaxLineBytes must not stay pinned
// in the pool after it is written.
const maxPooledFields = 16 << 10

// fieldsPool holds the buffers callers encode their records' fields into
// (encodeFields) before they queue them, so that a record allocates none.
var fieldsPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getFieldsBuf() *[]byte { return fieldsPool.Get().(*[]byte) }

func putFieldsBuf(b *[]byte) {
	if cap(*b) > maxPooledFields {
		return
	}
	*b = (*b)[:0]
	fieldsPool.Put(b)
}
