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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/sync/semaphore"
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
	// default 60s, negative for none. Time spent waiting for memory to
	// read a result into (see maxBodiesHeld) does not count. A status,
	// result, cancel or model call that times out is retried; a submit
	// that times out after being sent is not. Downloads through
	// HTTPClient() are not affected.
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
// calls share one rate limiter, which a 429 lowers (without a rate, they
// share one 429 pause instead).
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
	bodies      *bodyBudget // memory for answers, shared by every call

	mu         sync.Mutex
	pauseUntil time.Time // set by a 429 when there is no rate to lower; every request waits for it
	maxRate    float64   // the rate asked for (Options.RPS); the limiter's rate adapts below it
	lastSlow   time.Time // when the rate was last lowered
	// limited counts the pauses for 429s without Retry-After since the
	// last answer that was not a 429, from every call: the pause grows with
	// it, so that workers taking turns at a refusing account back off
	// together instead of each starting over from the base delay.
	limited atomic.Int64

	// answered is set by the first answer any call gets (any status): from
	// then on, a failure to connect is an outage to wait out, not a wrong
	// base URL (see GiveUpUnreached).
	answered atomic.Bool
	// outageSince is when calls began to fail without an answer after the
	// API had answered, and outageWhy the last such failure; zero while
	// answers come (see Outage).
	outageSince time.Time
	outageWhy   string
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
		bodies:      newBodyBudget(maxBodiesHeld),
	}
	if o.RPS > 0 && !math.IsInf(o.RPS, 1) {
		// Burst 1: "at most N per second" holds in every second, even
		// right after an idle spell.
		c.limiter = rate.NewLimiter(rate.Limit(o.RPS), 1)
		c.maxRate = o.RPS
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
	// Between, when set, waits d between two attempts in place of a sleep,
	// given the error of the attempt that created nothing: the job is not
	// at RunComfy meanwhile, so the caller may record that and lend its
	// place to another. An error aborts the submission, NotSent.
	Between func(ctx context.Context, d time.Duration, refused error) error
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
	err = c.call(ctx, callSpec{op: "submit", method: http.MethodPost, path: path, body: body, limit: maxAnswer,
		retry: submitRetryable, intake: o.Intake, beforeSend: o.BeforeSend, between: o.Between}, &out)
	return out, err
}

// Status calls GET /v1/requests/{id}/status.
func (c *Client) Status(ctx context.Context, requestID string) (StatusResponse, error) {
	var out StatusResponse
	err := c.requestCall(ctx, "status", http.MethodGet, requestID, "/status", maxAnswer, &out)
	return out, err
}

// Result calls GET /v1/requests/{id}/result?include_cost=true. Before the
// job ends it holds the current status and no output.
func (c *Client) Result(ctx context.Context, requestID string) (Result, error) {
	var out Result
	err := c.requestCall(ctx, "result", http.MethodGet, requestID, "/result?include_cost=true", maxResultAnswer, &out)
	return out, err
}

// Cancel calls POST /v1/requests/{id}/cancel. A job already running answers
// with Outcome "not_cancellable", not with an error.
func (c *Client) Cancel(ctx context.Context, requestID string) (CancelResponse, error) {
	var out CancelResponse
	err := c.requestCall(ctx, "cancel", http.MethodPost, requestID, "/cancel", maxAnswer, &out)
	return out, err
}

// Model calls GET /v1/models/{modelID} for the model's price.
func (c *Client) Model(ctx context.Context, modelID string) (ModelInfo, error) {
	var out ModelInfo
	path, err := modelPath(modelID)
	if err != nil {
		return out, localError("model", err)
	}
	err = c.call(ctx, callSpec{op: "model", method: http.MethodGet, path: path, limit: maxAnswer, retry: retryable}, &out)
	return out, err
}

// Models calls GET /v1/models: the catalog's models whose name or id
// matches search ("" for all), with their input schemas when asked, at
// most limit of them (0 for the API's default).
func (c *Client) Models(ctx context.Context, search string, withSchema bool, limit int) (ModelList, error) {
	var out ModelList
	q := url.Values{}
	if search != "" {
		q.Set("search", search)
	}
	if withSchema {
		q.Set("include_schema", "true")
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/models"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	err := c.call(ctx, callSpec{op: "models", method: http.MethodGet, path: path, limit: maxResultAnswer, retry: retryable}, &out)
	return out, err
}

func (c *Client) requestCall(ctx context.Context, op, method, requestID, suffix string, limit int64, out any) error {
	if requestID == "" {
		return localError(op, errors.New("empty request id"))
	}
	path := "/v1/requests/" + url.PathEscape(requestID) + suffix
	return c.call(ctx, callSpec{op: op, method: method, path: path, limit: limit, retry: retryable}, out)
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
	limit            int64                                             // the most bytes its answer may have
	retry            func(error) bool                                  // whether a failed attempt may be repeated
	intake           context.Context                                   // bounds the waits before sending; nil = ctx
	beforeSend       func() error                                      // runs right before each attempt is sent
	between          func(context.Context, time.Duration, error) error // waits between attempts; nil = sleep
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
	warned := false // about a clipped Retry-After, once per call
	unreached := 0  // attempts in a row that never connected
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
		err := c.once(ctx, cs, out)
		if err == nil {
			if c.limited.Load() != 0 {
				c.limited.Store(0)
			}
			c.speedUp()
			return nil
		}
		e, _ := asError(err)
		if NeverConnected(err) {
			unreached++
		} else {
			unreached = 0
		}
		if e != nil && GiveUpUnreached(err, c.answered.Load(), unreached) {
			e.Unreachable = true
			return e
		}
		if e != nil && e.HTTPStatus == 0 && ctx.Err() == nil && IsTransient(err) {
			c.noteOutage(err)
		}
		limited := e != nil && e.HTTPStatus == http.StatusTooManyRequests
		if !limited && e != nil && e.HTTPStatus != 0 {
			c.limited.Store(0) // an answer that is not a 429: the account is let through
		}
		// With a shared rate, a 429 lowers it for every call, and only this
		// call waits (its Retry-After, else its own backoff): a trickle of
		// 429s costs a little throughput, not a pause of the world. Without
		// a rate there is nothing to lower: every call waits, for longer
		// the more 429s come in a row.
		adapted := limited && c.slowDown(op)
		delay := Backoff(attempt, c.baseDelay, c.maxDelay, c.rand())
		switch {
		case e != nil && e.RetryAfter >= 0:
			delay = e.RetryAfter
		case limited && !adapted:
			delay = c.rateLimited()
		case limited && attempt == 0:
			// The lowered rate paces the first retry: the other calls
			// are let through, and so most likely is this one.
			delay = 0
		case limited:
			delay = Backoff(attempt-1, c.baseDelay, c.maxDelay, c.rand())
		}
		if limited && !adapted {
			c.pause(delay)
			c.log.Warn("runcomfy: rate limited, pausing all calls", "op", op, "pause", delay)
		}
		if ctx.Err() != nil || attempt+1 >= c.maxAttempts || !cs.retry(err) {
			return err
		}
		c.log.Debug("runcomfy: retrying", "op", op, "attempt", attempt+1, "delay", delay, "err", err)
		if e != nil && e.retryAsked != "" && !warned {
			// Said where the wait begins: a call that gives up waits not.
			warned = true
			c.log.Warn("runcomfy: Retry-After over the cap; waiting the cap at most",
				"op", op, "asked", e.retryAsked, "cap", maxRetryAfter)
		}
		if limited && !adapted {
			continue // c.wait sleeps out the pause
		}
		between := func(ctx context.Context, d time.Duration, _ error) error { return c.sleep(ctx, d) }
		if cs.between != nil {
			between = cs.between
		}
		if err := between(waitCtx, delay, err); err != nil {
			return &Error{Op: op, NotSent: true, RetryAfter: RetryAfterUnset, Err: err}
		}
	}
}

// heard records that the API answered a call: it is reachable.
func (c *Client) heard() {
	if !c.answered.Load() {
		c.answered.Store(true)
	}
	c.mu.Lock()
	c.outageSince, c.outageWhy = time.Time{}, ""
	c.mu.Unlock()
}

// noteOutage records a call that got no answer from an API that had
// answered before.
func (c *Client) noteOutage(err error) {
	if !c.answered.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outageSince.IsZero() {
		c.outageSince = c.now()
	}
	c.outageWhy = Reason(err)
}

// Outage reports since when calls have been failing without an answer from
// an API that answered earlier calls, and why the last one failed; since
// is zero when the last call that ended was answered.
func (c *Client) Outage() (since time.Time, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.outageSince, c.outageWhy
}

// Base is the API's base URL as the client uses it, for messages.
func (c *Client) Base() string { return c.base }

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

// minRate is as low as a run of 429s takes the shared rate: a request every
// two seconds still finds out when the account lets calls through again.
const minRate = 0.5

// slowDown halves the shared rate after a 429 (at most once a second: the
// 429s of one burst answer requests sent at the old rate), and reports
// whether there is a rate to lower.
func (c *Client) slowDown(op string) bool {
	if c.limiter == nil {
		return false
	}
	c.mu.Lock()
	now := c.now()
	if now.Sub(c.lastSlow) < time.Second {
		c.mu.Unlock()
		return true
	}
	c.lastSlow = now
	cur := float64(c.limiter.Limit())
	next := max(minRate, cur/2)
	c.limiter.SetLimitAt(now, rate.Limit(next))
	c.mu.Unlock()
	c.log.Warn("runcomfy: rate limited; slowing every call down", "op", op, "rps", round2(next))
	return true
}

// speedUp raises the shared rate back after an answer that was let
// through, by a sixty-fourth of the rate asked for: from half speed it is
// back at full after 32 such answers.
func (c *Client) speedUp() {
	if c.limiter == nil {
		return
	}
	cur := float64(c.limiter.Limit())
	if cur >= c.maxRate {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur = float64(c.limiter.Limit())
	c.limiter.SetLimitAt(c.now(), rate.Limit(min(c.maxRate, cur+c.maxRate/64)))
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

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

// Size limits of API answers, per call. An answer over its call's limit is
// malformed: it is not read further, and not asked for again.
const (
	// maxAnswer bounds the answer to a submit, status, cancel or model
	// call: they are a few hundred bytes.
	maxAnswer = 1 << 20
	// maxResultAnswer bounds a result answer, which may carry its outputs
	// inline as data: URLs. RunComfy's partner nodes cap bodies at 64 MiB
	// too.
	maxResultAnswer = 64 << 20
	// maxBodiesHeld bounds the bytes of result (and models) answers one
	// Client holds in memory at once: room for the largest answer of
	// unknown length while its buffer grows (growthReserve, 80 MiB), or
	// two 50 MB outputs. What is held of a result answer is what its
	// filter keeps (see resultFilter): a few hundred bytes, unless its
	// output itself is large, as inline data: URLs are. Each read waits
	// its turn for the memory it needs; at -j 32 with 50 MB outputs the
	// client does not hold 32 of them at once. Answers capped at maxAnswer
	// are not counted and never wait: there are at most a few per worker,
	// and a submit's answer, which holds the id of a job just paid for,
	// must not queue behind a result's 80 MiB. Nor are a result filter's
	// own buffers (under 200 KiB), one per call in flight.
	maxBodiesHeld = 96 << 20
	// probeSize is what an answer of unknown length (chunked, or
	// compressed on the way), and what is kept of a result answer, is
	// first read into: nearly all of them fit.
	probeSize = 64 << 10
)

// bodyBudget is the memory for answers: bytes are reserved before they are
// read and released once decoded.
type bodyBudget struct {
	sem  *semaphore.Weighted
	size int64
	held atomic.Int64 // reserved now (for tests)
	peak atomic.Int64 // the most ever reserved at once (for tests)
}

func newBodyBudget(size int64) *bodyBudget {
	return &bodyBudget{sem: semaphore.NewWeighted(size), size: size}
}

func (b *bodyBudget) add(n int64) {
	now := b.held.Add(n)
	for p := b.peak.Load(); now > p && !b.peak.CompareAndSwap(p, now); p = b.peak.Load() {
	}
}

// release gives back *n bytes and zeroes *n.
func (b *bodyBudget) release(n *int64) {
	if *n > 0 {
		b.held.Add(-*n)
		b.sem.Release(*n)
		*n = 0
	}
}

// reserve takes n more bytes of the budget, adding them to *held. While it
// waits, the attempt's timer stands still: waiting for memory is not the
// server's slowness. The caller must hold nothing while it may wait (see
// readAnswer), or two calls could each wait for what the other holds.
func (c *Client) reserve(ctx context.Context, t *attemptTimer, n int64, held *int64) error {
	// A reservation larger than the budget would wait forever. It cannot
	// happen with the constants above; a smaller budget (a test's) is
	// taken whole instead.
	n = min(n, c.bodies.size)
	if n <= 0 {
		return nil
	}
	if !c.bodies.sem.TryAcquire(n) {
		t.pause()
		err := c.bodies.sem.Acquire(ctx, n)
		t.resume()
		if err != nil {
			return err
		}
	}
	*held += n
	c.bodies.add(n)
	return nil
}

// growthReserve is the most memory an answer of unknown length can take
// while readAnswer grows its buffer to limit: the largest step, a buffer
// and the one it is copied from.
func growthReserve(limit int64) int64 {
	cur := min(probeSize, limit)
	most := cur
	for cur < limit {
		next := min(4*cur, limit)
		most = max(most, cur+next)
		cur = next
	}
	return most
}

// errTooLarge is an answer over its call's size limit.
func errTooLarge(op string, length, limit int64) error {
	if length >= 0 {
		return fmt.Errorf("%w: %s answer of %d bytes is over its size limit of %s", errMalformed, op, length, sizeText(limit))
	}
	return fmt.Errorf("%w: %s answer is over its size limit of %s", errMalformed, op, sizeText(limit))
}

func sizeText(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// readAnswer reads an answer's body of declared length (-1 when unknown),
// at most limit bytes, into memory reserved from the client's budget and
// added to *held; the caller releases it once done with the bytes. A body
// over the limit is an errMalformed; a body cut short is the read's error.
//
// A result answer is read through a resultFilter: what is held is what
// the client reads of it, not what the server padded it with. The limit
// still counts the bytes received.
func (c *Client) readAnswer(ctx context.Context, t *attemptTimer, op string, body io.Reader, length, limit int64, held *int64) ([]byte, error) {
	if length > limit {
		return nil, errTooLarge(op, length, limit) // not a byte read
	}
	reserve := func(n int64) error {
		if limit <= maxAnswer {
			return nil // see maxBodiesHeld
		}
		return c.reserve(ctx, t, n, held)
	}
	var src io.Reader = &answerBody{r: body, length: length, limit: limit}
	// bound is the most bytes src can yield: a filter passes on no more
	// than it is given.
	bound := limit
	if length >= 0 {
		bound = length
	}
	// An answer of declared length is read at once; another is first read
	// into a probe, which nearly all of them fit, and so is what a filter
	// keeps of a result.
	first := bound
	if length < 0 || op == "result" {
		first = min(probeSize, bound)
	}
	if op == "result" {
		src = newResultFilter(src, smallValue)
	}
	if err := reserve(first); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, first)
	grown := false
	for {
		var done bool
		var err error
		if buf, done, err = fill(src, buf); err != nil || done {
			if errors.Is(err, errOverLimit) {
				return nil, errTooLarge(op, -1, limit)
			}
			return buf, err
		}
		if int64(cap(buf)) >= bound {
			// Full: only the end may follow.
			var one [1]byte
			switch n, err := io.ReadFull(src, one[:]); {
			case n > 0 || errors.Is(err, errOverLimit):
				return nil, errTooLarge(op, -1, limit)
			case err == io.EOF:
				return buf, nil
			default:
				return nil, err
			}
		}
		// More than the probe: a buffer of the declared length, or one
		// four times larger, up to the limit.
		next, most := bound, bound
		if length < 0 {
			next, most = min(4*int64(cap(buf)), limit), growthReserve(limit)
		}
		if !grown {
			// Trade the probe's reservation for the most the rest can
			// take, in one step and holding nothing meanwhile (the
			// probe's bytes are not counted while it waits).
			grown = true
			c.bodies.release(held)
			if err := reserve(most); err != nil {
				return nil, err
			}
		}
		grownBuf := make([]byte, len(buf), next)
		copy(grownBuf, buf)
		buf = grownBuf
	}
}

// fill reads src into buf until it is full (done false) or src ends (done
// true).
func fill(src io.Reader, buf []byte) (_ []byte, done bool, _ error) {
	for len(buf) < cap(buf) {
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	return buf, false, nil
}

// errOverLimit is a body that goes on past its call's limit.
var errOverLimit = errors.New("answer over its size limit")

// answerBody is an answer's body as received: of its declared length
// (fewer bytes is a cut answer, io.ErrUnexpectedEOF), or, when none was
// declared, of at most limit bytes (one more is errOverLimit).
type answerBody struct {
	r      io.Reader
	length int64 // declared, or -1
	limit  int64
	n      int64 // bytes read
}

func (b *answerBody) Read(p []byte) (int, error) {
	most := b.limit
	if b.length >= 0 {
		most = b.length
	}
	if b.n >= most {
		if b.length >= 0 {
			return 0, io.EOF // http.Response.Body ends at Content-Length
		}
		var one [1]byte
		n, err := io.ReadFull(b.r, one[:])
		if n > 0 {
			return 0, errOverLimit
		}
		return 0, err
	}
	n, err := b.r.Read(p[:min(int64(len(p)), most-b.n)])
	b.n += int64(n)
	if err == io.EOF && b.length >= 0 && b.n < b.length {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// attemptTimer bounds the time one attempt spends on the network: when it
// runs out the attempt is cancelled. It stands still while the attempt
// waits for memory to read its answer into. Only the attempt's goroutine
// calls its methods; a nil timer (no Timeout) never runs out.
type attemptTimer struct {
	t       *time.Timer
	left    time.Duration // when paused: what is left
	since   time.Time     // when it last started running
	paused  bool
	expired atomic.Bool // ran out, and cancelled the attempt
}

func startAttemptTimer(d time.Duration, cancel context.CancelFunc) *attemptTimer {
	if d <= 0 {
		return nil
	}
	a := &attemptTimer{left: d, since: time.Now()}
	a.t = time.AfterFunc(d, func() {
		a.expired.Store(true)
		cancel()
	})
	return a
}

func (a *attemptTimer) pause() {
	if a == nil || a.paused {
		return
	}
	if a.t.Stop() { // else it ran out already
		a.left -= time.Since(a.since)
		a.paused = true
	}
}

func (a *attemptTimer) resume() {
	if a == nil || !a.paused {
		return
	}
	a.paused = false
	a.since = time.Now()
	a.t.Reset(max(a.left, 0))
}

func (a *attemptTimer) stop() {
	if a != nil {
		a.t.Stop()
	}
}

func (a *attemptTimer) ranOut() bool { return a != nil && a.expired.Load() }

// once makes one attempt. Every failure is an *Error; NotSent comes from
// httptrace, which reports whether the whole request was written.
func (c *Client) once(ctx context.Context, cs callSpec, out any) error {
	op := cs.op
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := startAttemptTimer(c.timeout, cancel)
	defer timer.stop()
	// timedOut tells an attempt cut by its timer, which is a timeout that
	// may be retried, from one stopped by the caller's ctx, which is not.
	timedOut := func(err error) error {
		if timer.ranOut() && ctx.Err() == nil {
			return fmt.Errorf("attempt timed out after %s: %w", c.timeout, context.DeadlineExceeded)
		}
		return err
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
	if cs.body != nil {
		rd = bytes.NewReader(cs.body)
	}
	req, err := http.NewRequestWithContext(actx, cs.method, c.base+cs.path, rd)
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
	if cs.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return &Error{Op: op, NotSent: !wrote.Load(), RetryAfter: RetryAfterUnset, Err: timedOut(err)}
	}
	defer resp.Body.Close()
	c.heard()
	e := &Error{Op: op, HTTPStatus: resp.StatusCode}
	var clipped bool
	e.RetryAfter, clipped = parseRetryAfter(resp.Header.Get("Retry-After"), c.now())
	if clipped {
		e.retryAsked = clip(strings.ToValidUTF8(strings.TrimSpace(resp.Header.Get("Retry-After")), "?"), 100)
	}
	var held int64
	defer c.bodies.release(&held) // after decoding
	data, err := c.readAnswer(actx, timer, op, resp.Body, resp.ContentLength, cs.limit, &held)
	switch {
	case errors.Is(err, errMalformed): // over the size limit
		e.Err = err
		return e
	case err != nil:
		// Cut off mid-body, by the timer or the connection. Headers
		// without their body are no answer: for a submit, the job may
		// exist and its id is lost.
		e.HTTPStatus = 0
		e.Err = fmt.Errorf("HTTP %d answer cut off: %w", resp.StatusCode, timedOut(err))
		return e
	}

	// Anything the server echoes — a message, an error, a detail, the body
	// kept in an error — is scrubbed of the token before any of it is
	// decoded, so that no copy of it reaches the ledger, a log or a screen.
	data = c.scrub(data)
	code, msg := serverMessage(data)
	e.Code, e.Message = code, c.redact(msg)
	if (resp.StatusCode/100 != 2 || code != 0) && op == "submit" {
		// An answer that says something went wrong may still name the
		// request it created: that id is all it takes to find a job that
		// exists and is billed, so it is kept beside the error (the
		// caller's rules put such a job in flight, not failed).
		if r, ok := out.(*SubmitResponse); ok {
			var probe struct {
				RequestID Scalar `json:"request_id"`
			}
			if json.Unmarshal(data, &probe) == nil {
				r.RequestID = probe.RequestID
				e.RequestID = string(probe.RequestID)
			}
		}
	}
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
		e.Err = fmt.Errorf("%w: %v; the answer was: %s", errMalformed, err, c.excerpt(data))
		return e
	}
	if v, ok := out.(interface{ check() error }); ok {
		if err := v.check(); err != nil {
			e.Err = fmt.Errorf("%w: %v; the answer was: %s", errMalformed, err, c.excerpt(data))
			return e
		}
	}
	return nil
}

// excerpt is the start of an answer for an error message: 500 characters
// at most, token redacted, without copying the whole answer.
func (c *Client) excerpt(data []byte) string {
	data = bytes.TrimSpace(data)
	data = data[:min(len(data), 4*500+len(c.token))]
	return clip(c.redact(strings.ToValidUTF8(string(data), "?")), 500)
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

// scrub replaces the token in a body, as written and as JSON escapes it. A
// body without it is returned as is, not copied: it may be 64 MiB.
func (c *Client) scrub(data []byte) []byte {
	if c.token == "" {
		return data
	}
	if bytes.Contains(data, []byte(c.token)) {
		data = bytes.ReplaceAll(data, []byte(c.token), []byte("[redacted]"))
	}
	if q, err := json.Marshal(c.token); err == nil {
		if esc := q[1 : len(q)-1]; !bytes.Equal(esc, []byte(c.token)) && bytes.Contains(data, esc) {
			data = bytes.ReplaceAll(data, esc, []byte("[redacted]"))
		}
	}
	return c.scrubEscaped(data)
}

// scrubEscaped redacts the token in the JSON strings of a body that write
// it with other escapes than encoding/json's (\/, hex in capitals, an
// escaped letter): decoding them would restore it. Only strings with an
// escape are decoded; a body without one is returned as is.
func (c *Client) scrubEscaped(data []byte) []byte {
	if bytes.IndexByte(data, '\\') < 0 {
		return data
	}
	var out []byte // nil until a string is rewritten
	last := 0
	for i := 0; ; {
		q := bytes.IndexByte(data[i:], '"')
		if q < 0 {
			break
		}
		start, end, escaped := i+q, i+q+1, false
		for {
			k := bytes.IndexAny(data[end:], `"\`)
			if k < 0 {
				end = len(data)
				break
			}
			end += k + 1
			if data[end-1] == '"' {
				break
			}
			escaped, end = true, min(end+1, len(data))
		}
		if end == len(data) && data[end-1] != '"' {
			break // not a string's end: the body is not JSON
		}
		var s string
		if escaped && hasToken(data[start:end], c.token) && json.Unmarshal(data[start:end], &s) == nil && strings.Contains(s, c.token) {
			redacted, _ := json.Marshal(strings.ReplaceAll(s, c.token, "[redacted]"))
			out = append(append(out, data[last:start]...), redacted...)
			last = end
		}
		i = end
	}
	if out == nil {
		return data
	}
	return append(out, data[last:]...)
}

// hasToken reports whether a JSON string (quoted, with escapes) holds
// token once decoded. It decodes a window at a time: the string may be a
// data: URL of megabytes, and it is decoded whole only if it echoes the
// token.
func hasToken(quoted []byte, token string) bool {
	const window = 64 << 10
	var dec []byte
	s := quoted[1 : len(quoted)-1]
	for len(s) > 0 {
		if len(dec) >= window {
			if bytes.Contains(dec, []byte(token)) {
				return true
			}
			dec = append(dec[:0], dec[max(0, len(dec)-len(token)+1):]...)
		}
		k := bytes.IndexByte(s, '\\')
		if k < 0 {
			k = len(s)
		}
		k = min(k, window)
		dec, s = append(dec, s[:k]...), s[k:]
		if len(s) == 0 || s[0] != '\\' {
			continue
		}
		if len(s) < 2 {
			return false
		}
		if s[1] != 'u' {
			i := strings.IndexByte(`"\/bfnrt`, s[1])
			if i < 0 {
				return false
			}
			dec, s = append(dec, "\"\\/\b\f\n\r\t"[i]), s[2:]
			continue
		}
		r, n := unicodeEscape(s)
		if n == 0 {
			return false
		}
		if utf16.IsSurrogate(r) {
			r = utf8.RuneError
			if r2, n2 := unicodeEscape(s[n:]); n2 > 0 {
				if p := utf16.DecodeRune(rune(r), r2); p != utf8.RuneError {
					r, n = p, n+n2
				}
			}
		}
		dec, s = utf8.AppendRune(dec, r), s[n:]
	}
	return bytes.Contains(dec, []byte(token))
}

// unicodeEscape reads a \uXXXX escape at the start of s: its rune and
// length, 0 if there is none.
func unicodeEscape(s []byte) (rune, int) {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return 0, 0
	}
	v, err := strconv.ParseUint(string(s[2:6]), 16, 16)
	if err != nil {
		return 0, 0
	}
	return rune(v), 6
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
