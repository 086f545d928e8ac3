package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestLineFormat pins the bytes of a line: the format is what verifiers,
// possibly written in other languages, check, so it must not drift with
// the code that writes it.
func TestLineFormat(t *testing.T) {
	oslo := time.FixedZone("CET", 3600)
	expiry := time.Date(2026, 11, 24, 17, 4, 5, 0, oslo)
	r := Record{
		Seq: 7, Time: time.Date(2026, 11, 24, 16, 4, 5, 500_000_000, oslo), Kind: KindSignature,
		RequestID: "r1", GrantJTI: "jti-1", KeyLabel: "eseal", TokenExpiry: &expiry,
		Prev: strings.Repeat("0f", 32),
	}
	line, err := encodeLine(&r)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"seq":7,"time":"2026-11-24T15:04:05.5Z","kind":"signature","request_id":"r1","grant_jti":"jti-1","key_label":"eseal",` +
		`"token_expires_at":"2026-11-24T16:04:05Z","prev":"` + strings.Repeat("0f", 32) + `"}`
	sum := sha256.Sum256([]byte(body))
	hash := hex.EncodeToString(sum[:])
	want := strings.TrimSuffix(body, "}") + `,"hash":"` + hash + `"}` + "\n"
	if string(line) != want {
		t.Fatalf("line:\n%s\nwant:\n%s", line, want)
	}
	if r.Hash != hash || !bytes.Equal(r.Line(), line) {
		t.Errorf("record hash %s, line %q; want %s and the line", r.Hash, r.Line(), hash)
	}
	if expiry.Location() != oslo {
		t.Error("encoding changed the caller's token expiry")
	}
	back, err := parseLine(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	if back.Seq != 7 || back.Hash != hash || !back.Time.Equal(r.Time) || !back.TokenExpiry.Equal(expiry) {
		t.Errorf("parsed back %+v", back)
	}
}

// TestRecordHasNoSecretField: the grant, the token and the PIN have no
// place in a record, and a field added for one would fail here.
func TestRecordHasNoSecretField(t *testing.T) {
	allowed := map[string]bool{"grant_jti": true, "token_expires_at": true}
	typ := reflect.TypeFor[Record]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := strings.ToLower(f.Name + " " + f.Tag.Get("json"))
		for _, secret := range []string{"grant", "token", "pin", "assertion", "secret", "password"} {
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if strings.Contains(name, secret) && !allowed[tag] {
				t.Errorf("Record.%s looks like it holds a %s", f.Name, secret)
			}
		}
	}
}

func TestParseLineKinds(t *testing.T) {
	r := Record{Seq: 1, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: KindStart}
	good, err := encodeLine(&r)
	if err != nil {
		t.Fatal(err)
	}
	good = bytes.TrimSuffix(good, []byte("\n"))
	flipped := bytes.Clone(good) // the last digit of the hash changed
	flipped[len(flipped)-3] = "ab"[boolIndex(flipped[len(flipped)-3] == 'a')]
	tests := []struct {
		name string
		line string
		kind string
	}{
		{"edited", strings.Replace(string(good), "start", "stop!", 1), ProblemEdited},
		{"hash edited", string(flipped), ProblemEdited},
		{"hash in upper case", strings.ToUpper(string(good)), ProblemMalformed},
		{"no hash", `{"seq":1}`, ProblemMalformed},
		{"empty", ``, ProblemMalformed},
		{"cut", string(good[:len(good)-10]), ProblemMalformed},
		{"sealed garbage", string(reseal(t, []byte(`{"x":1,"hash":"`+strings.Repeat("0", 64)+`"}`))), ProblemMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseLine(bytes.TrimSuffix([]byte(tt.line), []byte("\n")))
			var le *lineError
			if !errors.As(err, &le) || le.kind != tt.kind {
				t.Fatalf("parseLine = %v, want a %s line", err, tt.kind)
			}
		})
	}
}

// FuzzVerifyLine: whatever a line holds, checking it never panics and
// says edited or malformed; and a line that verifies round-trips: the
// record it holds, written again, verifies and reads back the same.
func FuzzVerifyLine(f *testing.F) {
	r := sample(2)
	r.Seq, r.Time = 2, time.Date(2026, 11, 24, 15, 4, 5, 0, time.UTC)
	line, err := encodeLine(&r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.TrimSuffix(line, []byte("\n")))
	f.Fuzz(func(t *testing.T, line []byte) {
		checkLine(t, line)
		// The fuzzer cannot forge a SHA-256: to reach the decoding of what
		// is hashed, also seal the input with its own hash.
		if len(line) > 0 && line[len(line)-1] == '}' && line[0] == '{' {
			checkLine(t, bytes.TrimSuffix(resealBody(line), []byte("\n")))
		}
	})
}

func resealBody(body []byte) []byte {
	sum := sha256.Sum256(body)
	out := append(bytes.Clone(body[:len(body)-1]), hashPrefix...)
	out = append(out, hex.EncodeToString(sum[:])...)
	return append(out, "\"}\n"...)
}

func checkLine(t *testing.T, line []byte) {
	r, err := parseLine(line)
	if err != nil {
		var le *lineError
		if !errors.As(err, &le) || (le.kind != ProblemEdited && le.kind != ProblemMalformed) || le.detail == "" {
			t.Fatalf("parseLine(%q) = %v, not an edited or malformed line", line, err)
		}
		if _, uerr := parseLineUnchecked(line); uerr == nil && le.kind != ProblemEdited {
			t.Fatalf("parseLine(%q) = %v, but the line reads as a record", line, err)
		}
		return
	}
	if bytes.ContainsAny(line, "\n") {
		t.Fatalf("a line with a newline in it verified: %q", line)
	}
	body, _, _ := splitLine(line)
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != r.Hash {
		t.Fatalf("verified line %q: Hash %s is not the SHA-256 of its body", line, r.Hash)
	}
	again := r
	line2, err := encodeLine(&again)
	if err != nil {
		return // a time that is not representable once made UTC, such as year 0 at +01:00
	}
	r2, err := parseLine(bytes.TrimSuffix(line2, []byte("\n")))
	if err != nil {
		t.Fatalf("record from %q written again as %q does not verify: %v", line, line2, err)
	}
	if r2.Seq != r.Seq || r2.Kind != r.Kind || r2.Prev != r.Prev || !r2.Time.Equal(r.Time) || r2.Hash != again.Hash {
		t.Fatalf("record from %q read back as %+v, want %+v", line, r2, r)
	}
	line3, err := encodeLine(&r2)
	if err != nil || !bytes.Equal(line3, line2) {
		t.Fatalf("writing a record again is not stable:\n%s\n%s", line2, line3)
	}
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestCountIsAdditive: a record without a count (every record written
// before the field existed) reads as it did and stands for one call; a
// count is written after the other fields, before prev, and read back.
func TestCountIsAdditive(t *testing.T) {
	tests := []struct {
		name  string
		count uint64
		line  string // a part of the line
	}{
		{"no count, as in older logs", 0, `"decision":"deny","prev":`},
		{"a count", 37, `"decision":"deny","count":37,"prev":`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Record{Seq: 2, Time: time.Date(2026, 11, 24, 15, 4, 5, 0, time.UTC), Kind: KindDecision, Decision: "deny", Count: tt.count, Prev: strings.Repeat("0f", 32)}
			line, err := encodeLine(&r)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(line), tt.line) {
				t.Fatalf("line %s, want it to hold %s", line, tt.line)
			}
			back, err := parseLine(bytes.TrimSuffix(line, []byte("\n")))
			if err != nil || back.Count != tt.count {
				t.Fatalf("parsed back count %d, %v; want %d", back.Count, err, tt.count)
			}
		})
	}
}
