package runcomfy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Options configures a Client. The zero value talks to DefaultBaseURL
// without a token, without a rate limit, with the default retry policy.
type Options struct {
	BaseURL string // default DefaultBaseURL; a trailing slash or /v1 is tolerated
	Token   string // bearer token; never logged, never in error strings
	// HTTPClient is copied, and its Transport (or http.DefaultTransport)
	// wrapped so the token goes to the API host only.
	HTTPClient *http.Client
	// RPS is the most API requests per second, every call together; <= 0
	// means unlimited. Fractions are fine.
	RPS float64
	// MaxAttempts bounds the attempts of a retryable call; default 8.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the backoff; defaults 500ms and 30s.
	BaseDelay, MaxDelay time.Duration
	// Timeout bounds one attempt of an API call, response body included;
	// default 60s, negative for none. Downloads through HTTPClient() are
	// not affected. A submit that times out after being sent is not retried.
	Timeout time.Duration
	// Sleep waits d or until ctx is done; default a timer. Tests inject it
	// together with Now.
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time
	// Rand returns a number in [0,1) for the backoff's jitter; default
	// math/rand/v2. It must be safe for concurrent use.
	Rand   func() float64
	Logger *slog.Logger // nil discards
}

// Client calls RunComfy's Model API. It is safe for concurrent use; all its
// calls share one rate limiter and one 429 pause.
type Client struct {
	base        string // scheme://host[/prefix], no trailing slash
	token       string // kept only to scrub it from server messages
	hc          *http.Client
	limiter     *rate.Limiter // nil = unlimited
	maxAttempts int
	baseDelay   time.Duration
	maxDelay    time.Duration
	timeout     time.Duration
	sleep       func(context.Context, time.Duration) error
	now         func() time.Time
	rand        func() float64
	log         *slog.Logger

	mu         sync.Mutex
	pauseUntil time.Time // set by a 429; every request waits for it
	// limited counts the pauses for 429s without Retry-After since the
	// last answer that was not a 429, from every call: the pause grows with
	// it, so that workers taking turns at a refusing account back off
	// together instead of each starting over from the base delay.
	limited atomic.Int64
}

// New checks the options and builds a Client.
func New(o Options) (*Client, error) {
	raw := o.BaseURL
	if raw == "" {
		raw = DefaultBaseURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("runcomfy: base URL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("runcomfy: base URL %q: want http(s)://host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("runcomfy: base URL %q: no user, query or fragment allowed", raw)
	}
	// Every path below starts with /v1, and the official CLI's base URL
	// ends with /v1: accept both spellings.
	prefix := strings.TrimSuffix(strings.TrimRight(u.EscapedPath(), "/"), "/v1")

	hc := &http.Client{}
	if o.HTTPClient != nil {
		*hc = *o.HTTPClient
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	hc.Transport = &tokenTransport{next: next, scheme: u.Scheme, host: u.Host, token: o.Token}

	c := &Client{
		base:        u.Scheme + "://" + u.Host + prefix,
		token:       o.Token,
		hc:          hc,
		maxAttempts: o.MaxAttempts,
		baseDelay:   o.BaseDelay,
		maxDelay:    o.MaxDelay,
		timeout:     o.Timeout,
		sleep:       o.Sleep,
		now:         o.Now,
		rand:        o.Rand,
		log:         o.Logger,
	}
	if o.RPS > 0 && !math.IsInf(o.RPS, 1) {
		// Burst 1: "at most N per second" holds in every second, even
		// right after an idle spell.
		c.limiter = rate.NewLimiter(rate.Limit(o.RPS), 1)
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = 8
	}
	if c.baseDelay <= 0 {
		c.baseDelay = 500 * time.Millisecond
	}
	if c.maxDelay <= 0 {
		c.maxDelay = 30 * time.Second
	}
	if c.timeout == 0 {
		c.timeout = 60 * time.Second
	}
	if c.sleep == nil {
		c.sleep = SleepContext
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// SleepContext waits d, or until ctx is done. It is the default Sleep, and
// the runner's too, so both wait the same way.
func SleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// HTTPClient returns the client's wrapped http.Client, for downloads: it
// carries the token only to the API host, never to file hosts and never
// across a redirect to another host.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// SubmitOptions shape one submission.
type SubmitOptions struct {
	// Intake, when set, bounds the wait for the rate limiter and a 429
	// pause: once it is done the submit returns a NotSent error. The
	// request itself, once on the wire, is bounded by Submit's ctx only,
	// so that a first Ctrl-C (which ends the intake) never cuts off a
	// POST whose answer may hold the request id of a billed job.
	Intake context.Context
	// BeforeSend runs each time the limiter lets the POST go, right before
	// it is written: the caller commits its intent to submit there, after
	// the wait, so that a job killed while waiting is still pending. An
	// error aborts the submission, NotSent.
	BeforeSend func() error
}

// Submit posts input as the JSON body to POST /v1/models/{modelID}. It is
// retried only while the error proves that no job was created (429, or a
// request that never left); any other failure is returned at once, because
// without an idempotency key a repeat could pay twice. Use SubmitNotCreated
// on the error to tell "safe to submit again" from "outcome unknown".
func (c *Client) Submit(ctx context.Context, modelID string, input any, o SubmitOptions) (SubmitResponse, error) {
	var out SubmitResponse
	path, err := modelPath(modelID)
	if err != nil {
		return out, localError("submit", err)
	}
	body, err := json.Marshal(input)
	if err != nil {
		return out, localError("submit", fmt.Errorf("encode input: %w", err))
	}
	err = c.call(ctx, callSpec{op: "submit", method: http.MethodPost, path: path, body: body,
		retry: submitRetryable, intake: o.Intake, beforeSend: o.BeforeSend}, &out)
	return out, err
}

// Status calls GET /v1/requests/{id}/status.
func (c *Client) Status(ctx context.Context, requestID string) (StatusResponse, error) {
	var out StatusResponse
	err := c.requestCall(ctx, "status", http.MethodGet, requestID, "/status", &out)
	return out, err
}

// Result calls GET /v1/requests/{id}/result?include_cost=true. Before the
// job ends it holds the current status and no output.
func (c *Client) Result(ctx context.Context, requestID string) (Result, error) {
	var out Result
	err := c.requestCall(ctx, "result", http.MethodGet, requestID, "/result?include_cost=true", &out)
	return out, err
}

// Cancel calls POST /v1/requests/{id}/cancel. A job already running answers
// with Outcome "not_cancellable", not with an error.
func (c *Client) Cancel(ctx context.Context, requestID string) (CancelResponse, error) {
	var out CancelResponse
	err := c.requestCall(ctx, "cancel", http.MethodPost, requestID, "/cancel", &out)
	return out, err
}

// Model calls GET /v1/models/{modelID} for the model's price.
func (c *Client) Model(ctx context.Context, modelID string) (ModelInfo, error) {
	var out ModelInfo
	path, err := modelPath(modelID)
	if err != nil {
		return out, localError("model", err)
	}
	err = c.call(ctx, callSpec{op: "model", method: http.MethodGet, path: path, retry: retryable}, &out)
	return out, err
}

func (c *Client) requestCall(ctx context.Context, op, method, requestID, suffix string, out any) error {
	if requestID == "" {
		return localError(op, errors.New("empty request id"))
	}
	path := "/v1/requests/" + url.PathEscape(requestID) + suffix
	return c.call(ctx, callSpec{op: op, method: method, path: path, retry: retryable}, out)
}

// modelPath keeps the id's slashes as path separators, as the API wants,
// and escapes everything else.
func modelPath(modelID string) (string, error) {
	segs := strings.Split(modelID, "/")
	for i, s := range segs {
		if s == "" || s == "." || s == ".." {
			return "", fmt.Errorf("bad model id %q", modelID)
		}
		segs[i] = url.PathEscape(s)
	}
	return "/v1/models/" + strings.Join(segs, "/"), nil
}

func localError(op string, err error) *Error {
	return &Error{Op: op, NotSent: true, RetryAfter: RetryAfterUnset, Err: fmt.Errorf("%w: %w", errLocal, err)}
}

// retryable is the policy of calls that change nothing (and of cancel,
// which may be repeated): retry what may go away by itself.
func retryable(err error) bool { return IsTransient(err) && !IsAccountError(err) }

// submitRetryable is stricter: only where no job can have been created.
func submitRetryable(err error) bool { return retryable(err) && SubmitNotCreated(err) }

// callSpec is one API call: what to send and how to treat failures.
type callSpec struct {
	op, method, path string
	body             []byte
	retry            func(error) bool // whether a failed attempt may be repeated
	intake           context.Context  // bounds the waits before sending; nil = ctx
	beforeSend       func() error     // runs right before each attempt is sent
}

// call runs one API call under the shared pause and rate limit, retrying
// while the spec says so, and decodes a 2xx body into out.
func (c *Client) call(ctx context.Context, cs callSpec, out any) error {
	op := cs.op
	waitCtx := ctx
	if cs.intake != nil {
		var stop context.CancelFunc
		waitCtx, stop = mergeDone(ctx, cs.intake)
		defer stop()
	}
	for attempt := 0; ; attempt++ {
		if err := c.wait(waitCtx); err != nil {
			// Stopped before sending: nothing was created by this attempt,
			// and a submit only gets here after answers that prove none
			// was created by the earlier ones either.
			return &Error{Op: op, NotSent: true, RetryAfter: RetryAfterUnset, Err: err}
		}
		if cs.beforeSend != nil {
			if err := cs.beforeSend(); err != nil {
				return &Error{Op: op, NotSent: true, RetryAfter: RetryAfterUnset, Err: err}
			}
		}
		err := c.once(ctx, op, cs.method, cs.path, cs.body, out)
		if err == nil {
			if c.limited.Load() != 0 {
				c.limited.Store(0)
			}
			return nil
		}
		e, _ := asError(err)
		limited := e != nil && e.HTTPStatus == http.StatusTooManyRequests
		if !limited && e != nil && e.HTTPStatus != 0 {
			c.limited.Store(0) // an answer that is not a 429: the account is let through
		}
		delay := Backoff(attempt, c.baseDelay, c.maxDelay, c.rand())
		switch {
		case e != nil && e.RetryAfter >= 0:
			delay = e.RetryAfter
		case limited:
			delay = c.rateLimited()
		}
		if limited {
			// The limit is the account's, not this call's: hold every
			// call of this client, whether or not this one retries.
			c.pause(delay)
			c.log.Warn("runcomfy: rate limited, pausing all calls", "op", op, "pause", delay)
		}
		if ctx.Err() != nil || attempt+1 >= c.maxAttempts || !cs.retry(err) {
			return err
		}
		c.log.Debug("runcomfy: retrying", "op", op, "attempt", attempt+1, "delay", delay, "err", err)
		if limited {
			continue // c.wait sleeps out the pause
		}
		if err := c.sleep(waitCtx, delay); err != nil {
			return &Error{Op: op, NotSent: true, RetryAfter: RetryAfterUnset, Err: err}
		}
	}
}

// mergeDone returns a context that is done when either a or b is; its values
// are a's.
func mergeDone(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(a)
	stop := context.AfterFunc(b, func() { cancel(context.Cause(b)) })
	return ctx, func() { stop(); cancel(nil) }
}

// wait holds a request until the 429 pause is over and the limiter lets it
// go. The pause is checked again after the limiter, because another call
// may have been told 429 meanwhile.
func (c *Client) wait(ctx context.Context) error {
	if err := c.waitPause(ctx); err != nil {
		return err
	}
	if c.limiter != nil {
		if err := c.limiter.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// The limiter refuses early when the deadline would pass first.
			return fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
		}
	}
	return c.waitPause(ctx)
}

func (c *Client) waitPause(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for {
		c.mu.Lock()
		until := c.pauseUntil
		d := until.Sub(c.now())
		c.mu.Unlock()
		if d <= 0 {
			return nil
		}
		if err := c.sleep(ctx, d); err != nil {
			return err
		}
		// Sleep again only if another 429 moved the end meanwhile, not
		// because an injected clock did not move.
		c.mu.Lock()
		extended := c.pauseUntil.After(until)
		c.mu.Unlock()
		if !extended {
			return nil
		}
	}
}

// rateLimited is the pause for a 429 without Retry-After. A 429 that comes
// back while a pause is on answers a request sent before it began: the same
// refusal, so it neither lengthens the pause nor counts in the streak.
func (c *Client) rateLimited() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if left := c.pauseUntil.Sub(c.now()); left > 0 {
		return left
	}
	streak := c.limited.Add(1) - 1
	return RateLimitBackoff(int(min(streak, 64)), c.baseDelay, c.maxDelay, c.rand())
}

func (c *Client) pause(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if until := c.now().Add(d); until.After(c.pauseUntil) {
		c.pauseUntil = until
	}
}

// maxBody bounds a response body; a result is a few KB of JSON.
const maxBody = 16 << 20

// once makes one attempt. Every failure is an *Error; NotSent comes from
// httptrace, which reports whether the whole request was written.
func (c *Client) once(ctx context.Context, op, method, path string, body []byte, out any) error {
	actx := ctx
	if c.timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(actx, c.timeout)
		defer cancel()
	}
	var wrote atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	})
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, c.base+path, rd)
	if err != nil {
		return localError(op, err)
	}
	if op == "submit" {
		// No GetBody: Go's transport may otherwise replay the body on its
		// own (an HTTP/2 stream reset, a 307/308), a second paid POST.
		req.GetBody = nil
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "comfybatch")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return &Error{Op: op, NotSent: !wrote.Load(), RetryAfter: RetryAfterUnset, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	e := &Error{
		Op:         op,
		HTTPStatus: resp.StatusCode,
		RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
	}
	switch {
	case err != nil: // cut off mid-body: a connection error, not an answer
		e.Err = err
		return e
	case len(data) > maxBody:
		e.Err = fmt.Errorf("%w: body over %d bytes", errMalformed, maxBody)
		return e
	}

	// Anything the server echoes — a message, an error, a detail, the body
	// kept in an error — is scrubbed of the token before any of it is
	// decoded, so that no copy of it reaches the ledger, a log or a screen.
	data = c.scrub(data)
	code, msg := serverMessage(data)
	e.Code, e.Message = code, c.redact(msg)
	if resp.StatusCode/100 != 2 {
		return e
	}
	if code != 0 {
		// Some RunComfy endpoints report errors with a 2xx status; the
		// error_code is what counts. (Only error_code: a result's own
		// "error" field is data, not a failed call.)
		return e
	}
	e.Message = ""
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}") // an empty 2xx answer decodes to the zero value
	}
	// A 2xx answer that cannot be used is kept in the error (clipped,
	// token redacted): for a submit it may hold the request id of a job
	// that exists and is billed, in a shape this client did not expect.
	if err := decodeLenient(data, out); err != nil {
		e.Err = fmt.Errorf("%w: %v; the answer was: %s", errMalformed, err, clip(c.redact(strings.ToValidUTF8(string(bytes.TrimSpace(data)), "?")), 500))
		return e
	}
	if v, ok := out.(interface{ check() error }); ok {
		if err := v.check(); err != nil {
			e.Err = fmt.Errorf("%w: %v; the answer was: %s", errMalformed, err, clip(c.redact(strings.ToValidUTF8(string(bytes.TrimSpace(data)), "?")), 500))
			return e
		}
	}
	return nil
}

// decodeLenient decodes a JSON object into out, ignoring unknown fields and
// treating a field of an unexpected type as absent: a new server must not
// break an old client, and a half-decoded field (a non-nil pointer to 0)
// would be worse than none.
func decodeLenient(data []byte, out any) error {
	err := json.Unmarshal(data, out)
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) || typeErr.Field == "" {
		return err // nil, a syntax error, or not an object at all
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return err
	}
	for range len(fields) {
		top, _, _ := strings.Cut(typeErr.Field, ".")
		if _, ok := fields[top]; !ok {
			return nil // cannot tell which field: keep what was decoded
		}
		delete(fields, top)
		data, _ = json.Marshal(fields)
		reflect.ValueOf(out).Elem().SetZero()
		if err = json.Unmarshal(data, out); !errors.As(err, &typeErr) {
			return err
		}
	}
	return nil
}

// scrub replaces the token in a body, as written and as JSON escapes it.
func (c *Client) scrub(data []byte) []byte {
	if c.token == "" {
		return data
	}
	data = bytes.ReplaceAll(data, []byte(c.token), []byte("[redacted]"))
	if q, err := json.Marshal(c.token); err == nil {
		if esc := q[1 : len(q)-1]; !bytes.Equal(esc, []byte(c.token)) {
			data = bytes.ReplaceAll(data, esc, []byte("[redacted]"))
		}
	}
	return data
}

// redact keeps the token out of anything the server echoed back.
func (c *Client) redact(s string) string {
	if c.token == "" {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[redacted]")
}

// check rejects a submit answer without a request id: the job may exist,
// but nothing can be done with it, so the caller must treat it as unknown.
func (r *SubmitResponse) check() error {
	if r.RequestID == "" {
		return errors.New("submit answer without request_id")
	}
	return nil
}
