package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/pkcs11"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/signer"
)

// refusal is the daemon's answer to a call that got no token, said in a
// sentence with the status's details (the field, Maskinporten's codes,
// when to come back).
type refusal struct {
	code codes.Code
	msg  string
}

func (r refusal) Error() string { return r.msg }

// exitStatus: denied by the policy 3, a request the flags made wrong 2,
// try again later 69, anything else 1.
func (r refusal) exitStatus() int {
	switch r.code {
	case codes.PermissionDenied:
		return exitDenied
	case codes.InvalidArgument:
		return exitUsage
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
		return exitUnavailable
	}
	return exitFailure
}

// explainCallError turns what a call to the daemon at opts returned into
// a sentence: where the daemon was looked for when it could not be
// reached, what it said and what to do when it refused.
func explainCallError(opts client.Options, timeout time.Duration, err error) error {
	st := status.Convert(err)
	var (
		retry *errdetails.RetryInfo
		bad   *errdetails.BadRequest
		info  *errdetails.ErrorInfo
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.BadRequest:
			bad = d
		case *errdetails.ErrorInfo:
			info = d
		}
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if retry == nil {
			// The daemon's own UNAVAILABLE always says when to come back:
			// without it, the daemon was not reached at all.
			return unreachable(opts, st)
		}
		msg = fmt.Sprintf("the daemon could not issue a token now: %s; try again in %s", msg, retry.GetRetryDelay().AsDuration().Round(time.Millisecond))
	case codes.ResourceExhausted:
		msg = "the daemon refused the call: " + msg
		if retry != nil {
			msg += fmt.Sprintf("; try again in %s", retry.GetRetryDelay().AsDuration().Round(time.Millisecond))
		}
	case codes.DeadlineExceeded:
		msg = fmt.Sprintf("no token from portvakt at %s within %s (--timeout): try again, or with a longer --timeout", where(opts), timeout)
	case codes.PermissionDenied:
		msg = "the daemon refused the request: " + msg
	case codes.InvalidArgument:
		var more []string
		for _, v := range bad.GetFieldViolations() {
			if !strings.Contains(msg, v.GetDescription()) {
				more = append(more, fmt.Sprintf("field %s: %s", v.GetField(), v.GetDescription()))
			}
		}
		msg = "the daemon found the request invalid: " + msg + details(more)
	case codes.FailedPrecondition:
		var more []string
		if info != nil {
			if r := strings.ToLower(info.GetReason()); !strings.Contains(msg, r) {
				more = append(more, "error "+r)
			}
			for _, k := range []string{"mp_code", "http_status", "trace_id"} {
				if v := info.GetMetadata()[k]; v != "" && v != "0" && !strings.Contains(msg, v) {
					more = append(more, k+" "+v)
				}
			}
		}
		msg = "Maskinporten refused the grant: " + msg + details(more)
	case codes.Unauthenticated:
		msg = "the daemon does not know the caller: " + msg
	default:
		msg = fmt.Sprintf("the daemon answered: %s (%s)", msg, st.Code())
	}
	return refusal{code: st.Code(), msg: msg}
}

// details are what a status's details add to its message, in brackets.
func details(more []string) string {
	if len(more) == 0 {
		return ""
	}
	return " (" + strings.Join(more, ", ") + ")"
}

// unreachableError is a daemon that could not be reached at all.
type unreachableError struct{ msg string }

func (u unreachableError) Error() string { return u.msg }

// unreachable says why the daemon at opts could not be reached. gRPC's
// status holds its transport's text ("transport: Error while dialing:
// ..."); a plain connection to the same place says the cause in words a
// person knows (no such file, connection refused, permission denied).
func unreachable(opts client.Options, st *status.Status) error {
	network, addr := "unix", opts.Socket
	if opts.Socket == "" {
		network, addr = "tcp", strings.TrimPrefix(opts.Address, "dns:///")
	}
	cause := "the connection failed: " + strings.TrimPrefix(strings.TrimPrefix(st.Message(), `connection error: desc = "transport: `), "Error while dialing: ")
	cause = strings.TrimSuffix(cause, `"`)
	conn, err := net.DialTimeout(network, addr, 5*time.Second)
	if err == nil {
		conn.Close() // reachable now: the handshake is what failed
	} else {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			cause = errno.Error()
		}
	}
	hint := "is `portvakt serve` running? Set --socket or " + client.SocketEnv
	switch {
	case network == "tcp":
		hint = "is `portvakt serve` running there, and are --addr, --cert, --key and --ca right?"
	case errors.Is(err, syscall.EACCES):
		hint = "your user may not connect to it: the socket's group decides who may (listen.unix in the daemon's configuration); or set --socket or " + client.SocketEnv
	}
	return unreachableError{fmt.Sprintf("cannot reach portvakt at %s: %s; %s", where(opts), cause, hint)}
}

// where names the place the daemon is looked for.
func where(opts client.Options) string {
	if opts.Socket != "" {
		return "unix socket " + opts.Socket
	}
	return "address " + opts.Address
}

// isUnavailable reports whether err means that something needed is not
// there now and trying again later may work: the daemon not reached, the
// HSM away or busy. A PIN the HSM refused is not: trying again with it
// would only bring the lock closer.
func isUnavailable(err error) bool {
	var (
		u    unreachableError
		code pkcs11.Error
	)
	if errors.As(err, &u) {
		return true
	}
	if errors.Is(err, signer.ErrLoginRefused) {
		return false
	}
	if errors.Is(err, signer.ErrUnavailable) || errors.Is(err, signer.ErrBusy) {
		return true
	}
	class := p11.Classify(err)
	return errors.As(err, &code) && (class == p11.Gone || class == p11.Busy)
}
