package runcomfy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"comfybatch/lifecycle"
)

// Error is the only error type the client returns. Its fields carry what
// the caller needs to decide: retry, park the job as unknown, stop the run,
// or record a permanent failure. A cancelled context is kept in Err, so
// errors.Is(err, context.Canceled) holds, and NotSent still tells whether
// the request had left.
type Error struct {
	Op         string        // "submit", "status", "result", "cancel", "model"
	HTTPStatus int           // 0 when no response was received
	Code       int           // the body's error_code; 0 when absent
	Message    string        // the server's message, trimmed and shortened
	RetryAfter time.Duration // RetryAfterUnset when the response had none
	// NotSent is true when the request was never fully written, so the
	// server cannot have acted on it (dial, DNS, TLS, refused, or a local
	// failure before sending).
	NotSent bool
	Err     error // the underlying cause, if any
	// RequestID is the request_id a submit answer named although it
	// failed: the job exists (see lifecycle.Submit).
	RequestID string
	// Unreachable: the call gave up because the API has never been
	// reached by this client and could not be connected to now (see
	// GiveUpUnreached): the base URL or the network is wrong, not the API
	// slow.
	Unreachable bool

	// retryAsked is the Retry-After header as sent when it asked for
	// longer than maxRetryAfter and RetryAfter was clipped; "" otherwise.
	retryAsked string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("runcomfy ")
	b.WriteString(e.Op)
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.HTTPStatus)
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, " (error_code %d)", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.HTTPStatus == 0 && e.Err != nil {
		// Whether the request left is what decides if a submit may be
		// repeated, so say it where a person reading logs will see it.
		if e.NotSent {
			b.WriteString(" (request not sent)")
		} else {
			b.WriteString(" (request sent, no answer)")
		}
	}
	if e.RetryAfter >= 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Sentinels for failures that retrying cannot fix. They are wrapped into
// Error.Err so that IsTransient can tell them from connection failures.
var (
	errLocal     = errors.New("request not built")
	errMalformed = errors.New("malformed response")
)

func asError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// AnswerOf describes what a call came back with in lifecycle's terms, for
// lifecycle to decide what it means: nil is a usable 2xx answer.
func AnswerOf(err error) lifecycle.Answer {
	if err == nil {
		return lifecycle.Answer{HTTPStatus: 200}
	}
	e, ok := asError(err)
	if !ok {
		// Not the client's own error: nothing says whether it was sent.
		return lifecycle.Answer{Message: err.Error()}
	}
	return lifecycle.Answer{
		NotSent:    e.NotSent && e.HTTPStatus == 0,
		HTTPStatus: e.HTTPStatus,
		Code:       e.Code,
		Message:    e.Error(),
		Malformed:  IsMalformed(err),
	}
}

// IsAccountError reports an error that no job can get past until the user
// acts: bad or expired token, or no balance. The runner stops submitting.
func IsAccountError(err error) bool {
	_, ok := asError(err)
	return ok && AnswerOf(err).Account()
}

// IsTransient reports an error that may go away if the same call is made
// again: connection errors, timeouts, 408, 429 and 5xx. A cancellation by
// the caller is not transient.
func IsTransient(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	e, ok := asError(err)
	if !ok {
		return false
	}
	switch {
	case e.HTTPStatus == http.StatusRequestTimeout, e.HTTPStatus == http.StatusTooManyRequests, e.HTTPStatus >= 500:
		return true
	case e.Code != 0:
		return false // the server answered with a definite error
	case e.Err == nil, errors.Is(e.Err, errLocal), errors.Is(e.Err, errMalformed):
		return false
	}
	// Left: no response at all, or a response cut off while reading it.
	return true
}

// SubmitNotCreated reports a submit error that proves no job was created,
// so that submitting again cannot pay twice; lifecycle.SubmitRetryable
// says which.
func SubmitNotCreated(err error) bool {
	e, ok := asError(err)
	return ok && lifecycle.SubmitRetryable(AnswerOf(err), e.RequestID)
}

// NeverConnected reports an error that proves no connection to the API's
// server was ever made, so nothing can have been created: the name did not
// resolve, the dial failed (refused, no route, timed out) or the TLS
// handshake failed. A connection cut or a timeout after the request was
// written is not one: the server may have acted on it.
func NeverConnected(err error) bool {
	e, ok := asError(err)
	if !ok || !e.NotSent || e.HTTPStatus != 0 || e.Err == nil || errors.Is(e.Err, errLocal) {
		return false
	}
	return connectFailure(e.Err)
}

// connectFailure reports a transport error raised before a connection
// carried any byte of a request.
func connectFailure(err error) bool {
	var (
		dns      *net.DNSError
		op       *net.OpError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		alert    tls.AlertError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &dns), errors.As(err, &verify), errors.As(err, &record), errors.As(err, &alert),
		errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid):
		return true
	case errors.As(err, &op):
		return op.Op == "dial"
	}
	// net/http's own handshake errors have no exported type: a handshake
	// that timed out, and an https base URL answered in plain HTTP (a TLS
	// record header error, reworded).
	msg := err.Error()
	return strings.Contains(msg, "TLS handshake timeout") || strings.Contains(msg, "server gave HTTP response to HTTPS client")
}

// FirstContactTries is how many attempts a call makes when every one fails
// to connect and no call of the client has ever been answered: a few, over
// a second or two, to ride out a blip, not the minute a busy API is given.
const FirstContactTries = 3

// GiveUpUnreached decides whether a call stops retrying because the API
// cannot be reached at all: the attempt never connected, nothing has been
// answered since the client was made, and tries attempts (this one
// included) failed. Once any call was answered, the same error is an outage
// in the middle of a run, retried as usual.
func GiveUpUnreached(err error, answered bool, tries int) bool {
	return !answered && tries >= FirstContactTries && NeverConnected(err)
}

// IsUnreachable reports an error of a call that gave up because the API
// could not be reached (GiveUpUnreached).
func IsUnreachable(err error) bool {
	e, ok := asError(err)
	return ok && e.Unreachable
}

// Reason is the shortest account of why a call failed, for a person: the
// operating system's or TLS's own words ("connect: connection refused",
// "no such host"), without the URL and the operation around them.
func Reason(err error) string {
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return "no such host " + dns.Name
		}
		return "DNS lookup of " + dns.Name + " failed: " + dns.Err
	case errors.As(err, &op) && op.Err != nil:
		return op.Err.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err.Error()
	}
	if e, ok := asError(err); ok && e.Err != nil {
		return e.Err.Error()
	}
	return err.Error()
}

// IsNotFound reports a missing or expired request (or model): HTTP 404 or
// error_code 404001.
func IsNotFound(err error) bool {
	e, ok := asError(err)
	return ok && (e.HTTPStatus == http.StatusNotFound || e.Code == CodeNotFound)
}

// maxRetryAfter bounds how long a server's Retry-After is honoured. Ten
// minutes is longer than any real rate-limit window (rate limits count per
// second or per minute, and a gateway's 503 asks for seconds), yet short
// enough that a garbage value ("Retry-After: 999999", a date next year)
// cannot put a run to sleep through the night, one worker after another
// (or every call at once, for a client without a rate). Clipping a value that was meant costs one early
// request every ten minutes, which the server answers with another
// Retry-After; trusting a bogus one costs the whole run. Both forms, delay-
// seconds and HTTP date, are clipped, and a clipped value is logged once
// per call (see Client.call).
const maxRetryAfter = 10 * time.Minute

// ParseRetryAfter reads a Retry-After header value: delay-seconds or an
// HTTP date (relative to now). It returns RetryAfterUnset for an empty or
// unusable value; a date in the past gives 0; either form is clipped to
// ten minutes.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	d, _ := parseRetryAfter(v, now)
	return d
}

// parseRetryAfter is ParseRetryAfter, also reporting whether the server
// asked for longer than maxRetryAfter.
func parseRetryAfter(v string, now time.Time) (d time.Duration, clipped bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return RetryAfterUnset, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return RetryAfterUnset, false
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, false
	}
	// A number that does not fit int64 is still a (huge) number of seconds.
	if strings.Trim(v, "0123456789") == "" {
		return maxRetryAfter, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return RetryAfterUnset, false
	}
	d = t.Sub(now) // saturates rather than overflows
	if d < 0 {
		return 0, false
	}
	if d > maxRetryAfter {
		return maxRetryAfter, true
	}
	return d, false
}

// Backoff is the full-jitter exponential backoff: r * min(max, base*2^attempt),
// with r in [0,1] (clamped). It never overflows, whatever attempt is.
func Backoff(attempt int, base, max time.Duration, r float64) time.Duration {
	if base <= 0 || max <= 0 {
		return 0
	}
	attempt = min(attempt, 63) // 2^63 times any positive base is past any max
	if attempt < 0 {
		attempt = 0
	}
	ceiling := max
	if attempt < 63 && base <= max>>attempt { // then base<<attempt <= max: no overflow
		ceiling = base << attempt
	}
	if !(r > 0) { // also catches NaN
		return 0
	}
	f := r * float64(ceiling)
	if r >= 1 || f >= float64(ceiling) {
		// float64 rounding could otherwise step past ceiling (and past
		// MaxInt64 when ceiling is near it).
		return ceiling
	}
	return time.Duration(f)
}

// RateLimitBackoff is how long a 429 without Retry-After pauses every call:
// the exponential ceiling of Backoff for the number of such answers in a row
// (streak, from 0), with "equal" jitter, r * ceiling/2 + ceiling/2, so that
// the pause is never next to nothing while the account is being refused.
// Like Backoff it clamps r to [0,1] and never overflows.
func RateLimitBackoff(streak int, base, max time.Duration, r float64) time.Duration {
	ceiling := Backoff(streak, base, max, 1)
	half := ceiling / 2
	return ceiling - half + Backoff(0, half, half, r)
}

// errorBody holds the fields an error answer may carry. Each is raw because
// RunComfy's APIs disagree on types (error may be a string or an object,
// detail a list, error_code a number or a string).
type errorBody struct {
	ErrorCode    json.RawMessage `json:"error_code"`
	ErrorMessage json.RawMessage `json:"error_message"`
	Message      json.RawMessage `json:"message"`
	Error        json.RawMessage `json:"error"`
	Detail       json.RawMessage `json:"detail"`
}

// parseErrorCode returns the error_code of a body, 0 when absent, null or
// not a number.
func parseErrorCode(raw json.RawMessage) int {
	var n json.Number
	if len(raw) == 0 || json.Unmarshal(raw, &n) != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0
		}
		n = json.Number(strings.TrimSpace(s))
	}
	i, err := n.Int64()
	if err != nil || i < 0 || i > 1<<31 {
		return 0
	}
	return int(i)
}

// maxMessage bounds Error.Message: a proxy's HTML page is not a message.
const maxMessage = 300

// serverMessage picks the server's human-readable message from a body,
// falling back to the body's text when it is not JSON.
func serverMessage(body []byte) (code int, msg string) {
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		// Its start is enough for maxMessage characters, and copying a
		// large answer whole into a string would double it in memory.
		head := body[:min(len(body), 64*maxMessage)]
		return 0, shorten(strings.Join(strings.Fields(string(head)), " "))
	}
	for _, raw := range []json.RawMessage{eb.ErrorMessage, eb.Message, eb.Error} {
		if t := ErrorText(raw); t != "" {
			msg = t
			break
		}
	}
	if d := detailText(eb.Detail); d != "" {
		if msg == "" {
			msg = d
		} else if !strings.Contains(msg, d) {
			msg += ": " + d
		}
	}
	return parseErrorCode(eb.ErrorCode), shorten(strings.TrimSpace(msg))
}

// detailText renders a validation error's detail for a person, field by
// field: [{"loc":["body","seed"],"msg":"..."}] reads "seed: ...". Anything
// else is shown as ErrorText shows it.
func detailText(raw json.RawMessage) string {
	var items []struct {
		Loc []json.RawMessage `json:"loc"`
		Msg string            `json:"msg"`
	}
	if json.Unmarshal(raw, &items) != nil || len(items) == 0 {
		return ErrorText(raw)
	}
	parts := make([]string, 0, len(items))
	for _, it := range items {
		var path []string
		for i, l := range it.Loc {
			t := strings.Trim(string(l), `"`)
			if i == 0 && (t == "body" || t == "query" || t == "path") && len(it.Loc) > 1 {
				continue // where FastAPI found it, not which field
			}
			path = append(path, t)
		}
		field := strings.Join(path, ".")
		switch {
		case field != "" && it.Msg != "":
			parts = append(parts, field+": "+it.Msg)
		case it.Msg != "":
			parts = append(parts, it.Msg)
		}
	}
	if len(parts) == 0 {
		return ErrorText(raw)
	}
	return strings.Join(parts, "; ")
}

func shorten(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// IsMalformed reports a 2xx answer the client could not use.
func IsMalformed(err error) bool { return errors.Is(err, errMalformed) }
