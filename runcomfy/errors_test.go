package runcomfy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const base, max = 500 * time.Millisecond, 30 * time.Second
	const huge = time.Duration(math.MaxInt64)
	tests := []struct {
		attempt   int
		base, max time.Duration
		r         float64
		want      time.Duration
	}{
		{0, base, max, 1, base},
		{1, base, max, 1, time.Second},
		{3, base, max, 0.5, 2 * time.Second},
		{5, base, max, 1, 16 * time.Second},
		{6, base, max, 1, max}, // 32s capped
		{1000, base, max, 1, max},
		{1000, base, max, 0.5, max / 2},
		{-3, base, max, 1, base},
		{4, base, max, 0, 0},
		{4, base, max, math.NaN(), 0},
		{4, base, max, -1, 0},
		{4, base, max, 7, 8 * time.Second}, // r clamped to 1
		{0, time.Minute, max, 1, max},      // base above max
		{3, 0, max, 1, 0},
		{3, base, 0, 1, 0},
		{62, 1, huge, 1, 1 << 62},
		{63, 1, huge, 1, huge},
		{1000, time.Hour, huge, 1, huge},
		{1000, 1, huge, 0.25, huge / 4},
	}
	for _, tt := range tests {
		got := Backoff(tt.attempt, tt.base, tt.max, tt.r)
		// Float rounding may differ by a few ns on the huge cases.
		if diff := got - tt.want; diff < -1024 || diff > 1024 {
			t.Errorf("Backoff(%d, %v, %v, %v) = %v, want %v", tt.attempt, tt.base, tt.max, tt.r, got, tt.want)
		}
	}
}

func TestBackoffNeverOverflows(t *testing.T) {
	for _, max := range []time.Duration{30 * time.Second, time.Duration(math.MaxInt64)} {
		prev := time.Duration(0)
		for attempt := 0; attempt <= 1000; attempt++ {
			for _, r := range []float64{0, 0.3, 0.999999, 1} {
				d := Backoff(attempt, 500*time.Millisecond, max, r)
				if d < 0 || d > max {
					t.Fatalf("Backoff(%d, max %v, r %v) = %v: out of [0, max]", attempt, max, r, d)
				}
			}
			ceiling := Backoff(attempt, 500*time.Millisecond, max, 1)
			if ceiling < prev {
				t.Fatalf("ceiling shrank at attempt %d: %v < %v", attempt, ceiling, prev)
			}
			prev = ceiling
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"3", 3 * time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"", RetryAfterUnset},
		{"-1", RetryAfterUnset},
		{"1.5", RetryAfterUnset},
		{"soon", RetryAfterUnset},
		{"Sat, 01 Mar 2025 12:00:00", RetryAfterUnset}, // no zone: not an HTTP date
		{"600", 10 * time.Minute},
		{"601", 10 * time.Minute},
		{"100000", 10 * time.Minute},
		{"999999", 10 * time.Minute},
		{"99999999999999999999999", 10 * time.Minute},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(5 * time.Second).Format(time.RFC850), 5 * time.Second},
		{now.Add(1000 * time.Hour).Format(http.TimeFormat), 10 * time.Minute},
		{now.Add(10 * time.Minute).Format(http.TimeFormat), 10 * time.Minute},
		{"Fri, 31 Dec 9999 23:59:59 GMT", 10 * time.Minute},
	}
	for _, tt := range tests {
		if got := ParseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// noSleep makes retries instant in tests that do not look at delays.
func noSleep(ctx context.Context, d time.Duration) error { return ctx.Err() }

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		header     string // Retry-After
		body       string
		code       int
		msg        string // substring of Message
		account    bool
		transient  bool
		notCreated bool
		notFound   bool
		malformed  bool
	}{
		{name: "400 bad model", status: 400, body: `{"error_code":400001,"error_message":"bad model id"}`, code: 400001, msg: "bad model id"},
		{name: "400 no balance", status: 400, body: `{"error_code":400002,"message":"insufficient balance"}`, code: 400002, msg: "insufficient", account: true},
		{name: "400 code as string", status: 400, body: `{"error_code":"400004","error":"token revoked"}`, code: 400004, msg: "token revoked", account: true},
		{name: "401 empty body", status: 401, account: true},
		{name: "401 bad token", status: 401, body: `{"error_code":400004,"error_message":"bad token"}`, code: 400004, account: true},
		{name: "402", status: 402, body: `{"detail":"pay up"}`, msg: "pay up", account: true},
		{name: "403 not yours", status: 403, body: `{"error_code":403001}`, code: 403001},
		{name: "404", status: 404, notFound: true},
		{name: "404001", status: 404, body: `{"error_code":404001,"error_message":"expired"}`, code: 404001, notFound: true},
		{name: "408", status: 408, transient: true},
		{name: "422 detail list", status: 422, body: `{"detail":[{"loc":["body","prompt"],"msg":"too long"}]}`, msg: "prompt: too long"},
		{name: "429", status: 429, header: "1", transient: true, notCreated: true},
		// A 429 naming the request it created: the job exists.
		{name: "429 with a request id", status: 429, body: `{"request_id":"r1"}`, transient: true},
		{name: "500", status: 500, body: `{"message":"boom"}`, msg: "boom", transient: true},
		{name: "502 html", status: 502, body: "<html>\n <h1>502   Bad Gateway</h1></html>", msg: "<h1>502 Bad Gateway</h1>", transient: true},
		// A gateway may answer 503 after the API created the job.
		{name: "503", status: 503, transient: true},
		{name: "504", status: 504, transient: true},
		{name: "200 with error_code", status: 200, body: `{"error_code":400002,"error_message":"no balance"}`, code: 400002, msg: "no balance", account: true},
		{name: "202 with 404001", status: 202, body: `{"error_code":"404001"}`, code: 404001, notFound: true},
		{name: "200 not JSON", status: 200, body: `<html>`, malformed: true},
		{name: "200 without request_id", status: 200, body: `{"status":"in_queue"}`, malformed: true},
		{name: "200 request_id null", status: 200, body: `{"request_id":null}`, malformed: true},
		{name: "200 request_id object", status: 200, body: `{"request_id":{"id":"r1"}}`, malformed: true},
		{name: "201 JSON array", status: 201, body: `["r1"]`, malformed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 1})
			_, err := c.Submit(context.Background(), "m/x", map[string]any{"prompt": "p"}, SubmitOptions{})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if e.HTTPStatus != tt.status || e.Code != tt.code || e.Op != "submit" {
				t.Errorf("got status %d code %d op %q, want %d %d submit", e.HTTPStatus, e.Code, e.Op, tt.status, tt.code)
			}
			if !strings.Contains(e.Message, tt.msg) {
				t.Errorf("Message = %q, want it to contain %q", e.Message, tt.msg)
			}
			if got := IsAccountError(err); got != tt.account {
				t.Errorf("IsAccountError = %v, want %v", got, tt.account)
			}
			if got := IsTransient(err); got != tt.transient {
				t.Errorf("IsTransient = %v, want %v", got, tt.transient)
			}
			if got := SubmitNotCreated(err); got != tt.notCreated {
				t.Errorf("SubmitNotCreated = %v, want %v", got, tt.notCreated)
			}
			if got := IsNotFound(err); got != tt.notFound {
				t.Errorf("IsNotFound = %v, want %v", got, tt.notFound)
			}
			if got := IsMalformed(err); got != tt.malformed {
				t.Errorf("IsMalformed = %v, want %v", got, tt.malformed)
			}
			if tt.header != "" && e.RetryAfter != time.Second {
				t.Errorf("RetryAfter = %v, want 1s", e.RetryAfter)
			} else if tt.header == "" && e.RetryAfter != RetryAfterUnset {
				t.Errorf("RetryAfter = %v, want unset", e.RetryAfter)
			}
			if e.NotSent {
				t.Error("NotSent = true for a request the server answered")
			}
		})
	}
}

func TestClassifiersOnOtherErrors(t *testing.T) {
	for _, err := range []error{nil, errors.New("x"), context.Canceled, fmt.Errorf("w: %w", context.DeadlineExceeded)} {
		if IsAccountError(err) || IsTransient(err) || SubmitNotCreated(err) || IsNotFound(err) || IsMalformed(err) {
			t.Errorf("%v: a classifier said yes to a non-*Error", err)
		}
	}
	// A wrapped *Error is still classified.
	wrapped := fmt.Errorf("job x: %w", &Error{Op: "submit", HTTPStatus: 429, RetryAfter: RetryAfterUnset})
	if !IsTransient(wrapped) || !SubmitNotCreated(wrapped) {
		t.Error("wrapped 429 not classified")
	}
	wrapped = fmt.Errorf("job x: %w", &Error{Op: "submit", HTTPStatus: 503, RetryAfter: RetryAfterUnset})
	if !IsTransient(wrapped) || SubmitNotCreated(wrapped) {
		t.Error("wrapped 503: want transient, outcome open")
	}
}

func TestNotSentWhenConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused

	c := newTestClient(t, Options{BaseURL: "http://" + addr, MaxAttempts: 1})
	_, err = c.Submit(context.Background(), "m/x", map[string]int{"seed": 1}, SubmitOptions{})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if !e.NotSent || e.HTTPStatus != 0 {
		t.Errorf("NotSent = %v, HTTPStatus = %d; want true, 0", e.NotSent, e.HTTPStatus)
	}
	if !SubmitNotCreated(err) || !IsTransient(err) {
		t.Errorf("refused: SubmitNotCreated = %v, IsTransient = %v; want both true", SubmitNotCreated(err), IsTransient(err))
	}
	if !strings.Contains(err.Error(), "not sent") {
		t.Errorf("Error() = %q, want it to say the request was not sent", err)
	}
}

func TestNotSentFalseWhenCutAfterWrite(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // the whole request arrived...
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // ...and no answer ever leaves
		}
	}))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 1})
	_, err := c.Submit(context.Background(), "m/x", map[string]int{"seed": 1}, SubmitOptions{})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if e.NotSent || e.HTTPStatus != 0 {
		t.Errorf("NotSent = %v, HTTPStatus = %d; want false, 0", e.NotSent, e.HTTPStatus)
	}
	if SubmitNotCreated(err) {
		t.Error("SubmitNotCreated = true after the request was written")
	}
	if !IsTransient(err) {
		t.Error("IsTransient = false for a cut connection")
	}
}

func TestErrorNeverShowsToken(t *testing.T) {
	const token = "tok-9f8e7d6c5b4a"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		fmt.Fprintf(w, `{"error_code":400004,"error_message":"token %s revoked (got %q)"}`, token, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, Token: token})
	_, err := c.Status(context.Background(), "r1")
	if err == nil || strings.Contains(err.Error(), token) {
		t.Fatalf("error %q shows the token", err)
	}
	if !strings.Contains(err.Error(), "[redacted]") || !IsAccountError(err) {
		t.Errorf("error %q: want the redacted server message and an account error", err)
	}
}

func TestShortenMessage(t *testing.T) {
	long := strings.Repeat("é", 400)
	_, msg := serverMessage([]byte(`{"message":"` + long + `"}`))
	if len(msg) > maxMessage+len("…") || !strings.HasSuffix(msg, "…") {
		t.Errorf("message of %d bytes not shortened: %q", len(msg), msg[:20])
	}
	if !strings.HasPrefix(long, strings.TrimSuffix(msg, "…")) {
		t.Error("shortening split a rune")
	}
}

func TestRateLimitBackoff(t *testing.T) {
	const base, ceil = 500 * time.Millisecond, 30 * time.Second
	const huge = time.Duration(math.MaxInt64)
	tests := []struct {
		streak    int
		base, max time.Duration
		r         float64
		want      time.Duration
	}{
		{0, base, ceil, 0, 250 * time.Millisecond}, // never below half the ceiling
		{0, base, ceil, 0.5, 375 * time.Millisecond},
		{0, base, ceil, 1, base},
		{1, base, ceil, 0, time.Second / 2},
		{3, base, ceil, 1, 4 * time.Second},
		{6, base, ceil, 0, ceil / 2}, // 32s capped at 30s
		{6, base, ceil, 1, ceil},
		{1000, base, ceil, 0.5, 22500 * time.Millisecond},
		{-1, base, ceil, 1, base},
		{2, base, ceil, math.NaN(), time.Second},
		{2, base, ceil, 9, 2 * time.Second}, // r clamped
		{2, 0, ceil, 1, 0},
		{2, base, 0, 1, 0},
		{63, 1, huge, 1, huge},
		{1000, time.Hour, huge, 1, huge},
		{1000, time.Hour, huge, 0, huge - huge/2},
	}
	for _, tt := range tests {
		got := RateLimitBackoff(tt.streak, tt.base, tt.max, tt.r)
		if diff := got - tt.want; diff < -1024 || diff > 1024 {
			t.Errorf("RateLimitBackoff(%d, %v, %v, %v) = %v, want %v", tt.streak, tt.base, tt.max, tt.r, got, tt.want)
		}
		if got < 0 || got > max(tt.max, 0) {
			t.Errorf("RateLimitBackoff(%d, %v, %v, %v) = %v: out of [0, max]", tt.streak, tt.base, tt.max, tt.r, got)
		}
	}
}

// TestSubmitUnusableAnswerKeepsTheBody: a 2xx submit answer this client
// cannot use may still name a created, billed job; its body goes into the
// error (which the ledger and the log keep), token redacted.
func TestSubmitUnusableAnswerKeepsTheBody(t *testing.T) {
	// A request_id nested in an object is not a scalar this client reads
	// (a bare number is: TestSubmitRequestIDScalar).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"request_id": {"id": 123456789}, "note": "tok-secret"}`)
	}))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, Token: "tok-secret", MaxAttempts: 1})
	_, err := c.Submit(context.Background(), "m/x", map[string]any{"prompt": "p"}, SubmitOptions{})
	if err == nil || !strings.Contains(err.Error(), "123456789") {
		t.Fatalf("err = %v; want the answer's request id in it", err)
	}
	if strings.Contains(err.Error(), "tok-secret") {
		t.Fatalf("the token leaked into the error: %v", err)
	}
	if SubmitNotCreated(err) {
		t.Fatal("an unusable 2xx answer must leave the submission open (unknown), not not-created")
	}
	if !IsMalformed(err) || IsTransient(err) {
		t.Errorf("IsMalformed = %v, IsTransient = %v; want true, false", IsMalformed(err), IsTransient(err))
	}
}
