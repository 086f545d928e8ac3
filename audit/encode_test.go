package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// marshalled is what the Writer wrote for r before it encoded by hand:
// json.Marshal of the record, times in UTC.
func marshalled(t testing.TB, r Record) []byte {
	t.Helper()
	normalize(&r)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	return b
}

// encoded is the body the Writer hashes now.
func encoded(t testing.TB, r Record) ([]byte, error) {
	t.Helper()
	normalize(&r)
	fields, err := encodeFields(nil, &r)
	if err != nil {
		return nil, err
	}
	return appendBody(nil, &r, fields, []byte(r.Prev))
}

// checkEncoding: r's body is byte for byte what encoding/json made of it,
// and reads back as the same record.
func checkEncoding(t *testing.T, r Record) {
	t.Helper()
	n := r
	normalize(&n)
	want, jerr := json.Marshal(n)
	got, err := encoded(t, r)
	switch {
	case jerr != nil && err == nil:
		t.Fatalf("encoded %s where encoding/json refused: %v", got, jerr)
	case jerr != nil:
		return // refused by both
	case err != nil:
		t.Fatalf("encoding: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded:\n%s\nencoding/json:\n%s", got, want)
	}
	back, err := decodeBody(got)
	if err != nil {
		t.Fatalf("the encoded body does not read back: %v", err)
	}
	// A byte that is not UTF-8 reads back as U+FFFD, which encoding/json
	// writes as `\ufffd` only for such a byte: the record itself cannot
	// come back then, only its bytes.
	if bytes.Contains(want, []byte(`\ufffd`)) {
		return
	}
	if again := marshalled(t, back); !bytes.Equal(again, want) || !back.Time.Equal(r.Time) {
		t.Fatalf("read back as another record:\n%s\nwant:\n%s", again, want)
	}
}

// TestEncodeMatchesJSON: for records of every kind and for strings that
// encoding/json escapes, the hand-written encoding is the bytes
// json.Marshal made, so that logs written before and after verify alike.
func TestEncodeMatchesJSON(t *testing.T) {
	oslo := time.FixedZone("CET", 3600)
	expiry := time.Date(2026, 11, 24, 17, 4, 5, 120, oslo)
	at := time.Date(2026, 11, 24, 16, 4, 5, 500_000_000, oslo)
	prev := strings.Repeat("0f", 32)
	full := sample(3)
	full.Seq, full.Time, full.Prev = 3, at, prev
	full.ConsumerOrg, full.Resource, full.GrantJTI, full.KeyLabel = "313427137", "https://api.example/x", "jti-1", "eseal"
	full.CertSHA256, full.Outcome, full.MPCode, full.Error = prev, "cached", "MP-130", "token endpoint: 400"
	full.TokenExpiry, full.Count, full.SystemUserOrg, full.SystemUserRef = &expiry, 41, "310000000", "ref-1"
	full.FromSeq, full.ToSeq, full.Cause, full.File, full.Size, full.Instance = 1, 2, CauseFsync, "audit.1-2.log", 1<<40, "replica-a"
	tests := []struct {
		name string
		r    Record
	}{
		{"first record", Record{Seq: 1, Time: at, Kind: KindStart, Reason: "audit log opened for writing"}},
		{"decision", func() Record { r := sample(7); r.Seq, r.Time, r.Prev = 7, at, prev; return r }()},
		{"every field", full},
		{"checkpoint", Record{Seq: 9, Time: at, Kind: KindCheckpoint, Prev: prev,
			Seal: &Seal{Instance: "i<1>", From: 2, HeadSeq: 8, HeadHash: prev, Key: prev, Signature: "ab+/=="}}},
		{"empty slices are left out", Record{Seq: 2, Time: at, Kind: KindDecision, Identities: []string{}, Scopes: []string{}, Prev: prev}},
		{"empty strings in a list", Record{Seq: 2, Time: at, Kind: KindDecision, Scopes: []string{"", "a", ""}, Prev: prev}},
		{"quotes and backslashes", Record{Seq: 2, Time: at, Kind: KindOutcome, Error: `say "no" \ C:\x`, Prev: prev}},
		{"control characters", Record{Seq: 2, Time: at, Kind: KindOutcome, Error: "a\x00b\x01\b\f\n\r\t\x1f\x7fz", Prev: prev}},
		{"HTML characters", Record{Seq: 2, Time: at, Kind: KindOutcome, Reason: "<script>a && b</script>", Prev: prev}},
		{"line and paragraph separators", Record{Seq: 2, Time: at, Kind: KindOutcome, Reason: "a\u2028b\u2029c", Prev: prev}},
		{"not UTF-8", Record{Seq: 2, Time: at, Kind: KindOutcome, Reason: "a\xffb\xc3(c\xed\xa0\x80d\xf4\x90\x80\x80", Prev: prev}},
		{"UTF-8 kept", Record{Seq: 2, Time: at, Kind: KindOutcome, Reason: "blåbærsyltetøy ✓ 𝄞", Identities: []string{"spiffe://øst/ü"}, Prev: prev}},
		{"cut at the end", Record{Seq: 2, Time: at, Kind: KindOutcome, Error: "trailing \xe2\x80", Prev: prev}},
		{"whole nanoseconds dropped", Record{Seq: 2, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: KindOutcome, Prev: prev}},
		{"a key's record", Record{Seq: 2, Time: at, Kind: KindKey, Environment: "test", KeyLabel: "registered-2027", Outcome: "registered", KID: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", Size: 1, Instance: "a", Prev: prev}},
		{"largest numbers", Record{Seq: 1<<64 - 1, Time: at, Kind: KindGap, Count: 1<<64 - 1, FromSeq: 1, ToSeq: 1<<64 - 2, Size: -1 << 63, Prev: prev}},
		{"year 0 and 9999", Record{Seq: 2, Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Kind: KindOutcome,
			TokenExpiry: func() *time.Time { t := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC); return &t }(), Prev: prev}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkEncoding(t, tt.r) })
	}
}

// TestEncodeRefusesWhatJSONRefuses: a time RFC 3339 cannot write is an
// error, as it was from encoding/json, not a line.
func TestEncodeRefusesWhatJSONRefuses(t *testing.T) {
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range []Record{
		{Seq: 2, Time: far, Kind: KindOutcome},
		{Seq: 2, Time: time.Now(), Kind: KindOutcome, TokenExpiry: &far},
	} {
		if _, err := json.Marshal(r); err == nil {
			t.Fatal("encoding/json took the year 10000")
		}
		if b, err := encoded(t, r); err == nil || !strings.Contains(err.Error(), "year outside of range") {
			t.Errorf("encoded %s, %v; want an error about the year", b, err)
		}
	}
}

// TestEncodeKnowsEveryField: each field of Record, set alone, is encoded
// as encoding/json encodes it. A field added to Record and not to
// encodeFields fails here.
func TestEncodeKnowsEveryField(t *testing.T) {
	typ := reflect.TypeFor[Record]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() || f.Tag.Get("json") == "-" {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			r := Record{Seq: 5, Time: time.Date(2026, 11, 24, 15, 4, 5, 0, time.UTC), Kind: KindOutcome}
			v := reflect.ValueOf(&r).Elem().Field(i)
			switch v.Interface().(type) {
			case string:
				v.SetString(strings.Repeat("ab", 32)) // a hash, for prev
			case uint64:
				v.SetUint(42)
			case int64:
				v.SetInt(-42)
			case []string:
				v.Set(reflect.ValueOf([]string{"x", "y"}))
			case time.Time:
				v.Set(reflect.ValueOf(time.Date(2027, 1, 1, 0, 0, 0, 1, time.UTC)))
			case *time.Time:
				e := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
				v.Set(reflect.ValueOf(&e))
			case *Seal:
				v.Set(reflect.ValueOf(&Seal{Instance: "i", From: 1, HeadSeq: 2, HeadHash: "h", Key: "k", Signature: "s"}))
			default:
				t.Fatalf("field %s of type %s: teach encodeFields and this test about it", f.Name, f.Type)
			}
			checkEncoding(t, r)
		})
	}
}

// FuzzEncode: whatever a caller puts in a record's fields, the encoding
// is what encoding/json made of it, and reads back as the record.
func FuzzEncode(f *testing.F) {
	f.Add("decision", "req-1", "allowed by policy.yaml:7", "", "uid:1000", "svv:kjoretoy", uint64(7), uint64(0), int64(0), int64(1764600000123456789), "")
	f.Add("outcome", "<&>", "a\u2028b", "\xff\x00\"\\", "", "", uint64(1), uint64(3), int64(-5), int64(0), "replica-1")
	f.Fuzz(func(t *testing.T, kind, requestID, reason, errText, identity, scope string, seq, count uint64, size, nanos int64, instance string) {
		if kind == "" {
			kind = KindOutcome
		}
		seq = max(seq, 1) // as the Writer numbers records
		sum := sha256.Sum256([]byte(requestID))
		r := Record{
			Seq: seq, Time: time.Unix(0, nanos), Kind: kind, RequestID: requestID, Reason: reason, Error: errText,
			Identities: []string{identity, reason}, Scopes: []string{scope}, Count: count, Size: size, Instance: instance,
			Client: identity, Method: scope, Cause: errText, KID: reason, Prev: hex.EncodeToString(sum[:]),
		}
		if seq%2 == 0 {
			expiry := time.Unix(nanos/3, 0)
			r.TokenExpiry, r.Prev, r.Identities = &expiry, "", nil
		}
		checkEncoding(t, r)
	})
}

// BenchmarkEncode is a decision record's line, fields to hash, alone.
func BenchmarkEncode(b *testing.B) {
	r := sample(1)
	r.Seq, r.Time, r.Prev = 2, time.Now().UTC(), strings.Repeat("0f", 32)
	var fields, line []byte
	b.ReportAllocs()
	for b.Loop() {
		fields, _ = encodeFields(fields[:0], &r)
		line, _, _ = appendLine(line[:0], &r, fields, []byte(r.Prev))
	}
}
