package maskinporten

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

var (
	// ErrInvalidRequest means the request was refused before any grant was
	// signed: a field is wrong.
	ErrInvalidRequest = errors.New("invalid token request")
	// ErrBadResponse means Maskinporten's answer could not be understood.
	ErrBadResponse = errors.New("unusable response from Maskinporten")
	// ErrDiscovery means no token endpoint is known: none is configured
	// and the issuer's metadata could not be had.
	ErrDiscovery = errors.New("discovery failed")
)

// Error is a refusal from Maskinporten (or from whatever answered in its
// place: a proxy, a load balancer).
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is the OAuth error code: invalid_grant, invalid_scope, …
	Code string
	// Description is error_description as sent.
	Description string
	// URI is error_uri, when sent.
	URI string
	// MPCode is the MP-nnn code found in the description, if any.
	MPCode string
	// TraceID is Maskinporten's trace id for the request, if any: quote it
	// to Digdir's support.
	TraceID string
	// RetryAfter is the server's Retry-After, if any.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Maskinporten refused the token request: HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.MPCode != "" {
		b.WriteString(" " + e.MPCode)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	if e.TraceID != "" && !strings.Contains(e.Description, e.TraceID) {
		b.WriteString(" (trace id " + e.TraceID + ")")
	}
	return b.String()
}

// Retryable reports whether the same request may succeed later: rate
// limiting and server errors. A 4xx refusal will be refused again.
func (e *Error) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

var (
	mpCodePattern  = regexp.MustCompile(`\bMP-\d{3}\b`)
	traceIDPattern = regexp.MustCompile(`(?i)trace[ _-]?id\W{0,3}([A-Za-z0-9][A-Za-z0-9-]{5,63})`)
)

// maxDescription bounds what an error keeps of an unexpected body (an HTML
// page from a proxy, say): enough to recognise it, not a page in the logs.
const maxDescription = 300

// ParseError reads a refusal. It never fails: whatever the body holds, the
// caller gets an *Error with the status and as much as could be read.
func ParseError(status int, header http.Header, body []byte) *Error {
	e := &Error{Status: status, RetryAfter: parseRetryAfter(header.Get("Retry-After"))}
	var fields struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
		ErrorURI         string `json:"error_uri"`
	}
	if err := decodeJSON(body, &fields); err == nil && fields.Error != "" {
		e.Code = clean(fields.Error, 64)
		e.Description = clean(fields.ErrorDescription, maxDescription)
		e.URI = clean(fields.ErrorURI, maxDescription)
	} else if text := clean(string(body), maxDescription); text != "" {
		e.Description = "unexpected response body: " + text
	}
	e.MPCode = mpCodePattern.FindString(e.Description)
	if m := traceIDPattern.FindStringSubmatch(e.Description); m != nil {
		e.TraceID = m[1]
	} else if id := header.Get("X-Trace-Id"); id != "" {
		e.TraceID = clean(id, 64)
	}
	return e
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// clean makes text from the network safe to put in an error or a log
// line: printable, one line, bounded.
func clean(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case !unicode.IsPrint(r):
			return -1
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
