package runcomfy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"comfybatch/lifecycle"
)

// newTestClient builds a client whose retries do not wait, unless o says
// otherwise.
func newTestClient(t *testing.T, o Options) *Client {
	t.Helper()
	if o.Sleep == nil {
		o.Sleep = noSleep
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clock is a manual clock. Its Sleep records the delay and moves time on
// by it, so waits take no real time.
type clock struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	c.t = c.t.Add(d)
	return nil
}

func (c *clock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

// script answers the n-th request with the n-th handler (the last one
// repeats) and counts requests.
type script struct {
	n        atomic.Int64
	handlers []http.HandlerFunc
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(s.n.Add(1)) - 1
	s.handlers[min(i, len(s.handlers)-1)](w, r)
}

func reply(status int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func cut(w http.ResponseWriter, r *http.Request) {
	io.ReadAll(r.Body)
	if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
		conn.Close()
	}
}

const okSubmit = `{"request_id":"r1","status_url":"x"}`

func TestSubmitRetryPolicy(t *testing.T) {
	tests := []struct {
		name     string
		handlers []http.HandlerFunc
		wantReqs int64
		wantOK   bool
	}{
		{"500 not retried", []http.HandlerFunc{reply(500, ""), reply(200, okSubmit)}, 1, false},
		{"502 not retried", []http.HandlerFunc{reply(502, ""), reply(200, okSubmit)}, 1, false},
		{"504 not retried", []http.HandlerFunc{reply(504, ""), reply(200, okSubmit)}, 1, false},
		{"408 not retried", []http.HandlerFunc{reply(408, ""), reply(200, okSubmit)}, 1, false},
		{"dropped connection not retried", []http.HandlerFunc{cut, reply(200, okSubmit)}, 1, false},
		{"400 not retried", []http.HandlerFunc{reply(400, `{"error_code":400001}`), reply(200, okSubmit)}, 1, false},
		{"429 with error_code 400002 not retried", []http.HandlerFunc{reply(429, `{"error_code":400002}`), reply(200, okSubmit)}, 1, false},
		{"429 retried", []http.HandlerFunc{reply(429, ""), reply(429, "", "Retry-After", "2"), reply(200, okSubmit)}, 3, true},
		// A 503 may come from a gateway after the API created the job: the
		// outcome is open, so the POST is not repeated.
		{"503 not retried", []http.HandlerFunc{reply(503, ""), reply(200, okSubmit)}, 1, false},
		{"503 with Retry-After not retried", []http.HandlerFunc{reply(503, "", "Retry-After", "1"), reply(200, okSubmit)}, 1, false},
		{"429 until attempts run out", []http.HandlerFunc{reply(429, "")}, 4, false},
		// Go's client replays a body on a 307/308 when it can; a paid POST
		// must never be sent twice that way.
		{"307 not followed", []http.HandlerFunc{reply(307, "", "Location", "/again"), reply(200, okSubmit)}, 1, false},
		{"308 not followed", []http.HandlerFunc{reply(308, "", "Location", "/again"), reply(200, okSubmit)}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{handlers: tt.handlers}
			srv := httptest.NewServer(s)
			defer srv.Close()
			clk := newClock()
			c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 4, Sleep: clk.Sleep, Now: clk.Now, Rand: func() float64 { return 1 }})
			res, err := c.Submit(context.Background(), "m/x", map[string]any{"a": 1}, SubmitOptions{})
			if got := s.n.Load(); got != tt.wantReqs {
				t.Errorf("server saw %d requests, want %d", got, tt.wantReqs)
			}
			if tt.wantOK && (err != nil || res.RequestID != "r1") {
				t.Errorf("Submit = %+v, %v; want r1", res, err)
			}
			if !tt.wantOK && err == nil {
				t.Error("Submit succeeded, want an error")
			}
		})
	}
}

func TestSubmitRetriedWhileNotSent(t *testing.T) {
	clk := newClock()
	c := newTestClient(t, Options{BaseURL: "http://127.0.0.1:1", MaxAttempts: 3, Sleep: clk.Sleep, Now: clk.Now, Rand: func() float64 { return 1 }})
	_, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{})
	if !SubmitNotCreated(err) {
		t.Fatalf("err = %v, want a not-sent error", err)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second} // 3 attempts, full backoff
	if got := clk.Slept(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("slept %v, want %v", got, want)
	}
}

func TestPollRetries(t *testing.T) {
	s := &script{handlers: []http.HandlerFunc{
		// The cut comes first, on a fresh connection: on a reused one Go's
		// transport would replay the GET by itself.
		cut, reply(500, ""), reply(502, "<html>"), reply(503, "", "Retry-After", "7"), reply(408, ""),
		reply(200, `{"status":"in_queue","queue_position":4}`),
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	clk := newClock()
	c := newTestClient(t, Options{BaseURL: srv.URL, Sleep: clk.Sleep, Now: clk.Now, Rand: func() float64 { return 0.5 }})
	st, err := c.Status(context.Background(), "r1")
	if err != nil || st.Status != StatusInQueue || st.QueuePosition == nil || *st.QueuePosition != 4 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if s.n.Load() != 6 {
		t.Errorf("server saw %d requests, want 6", s.n.Load())
	}
	// Backoff halves by Rand 0.5; the 503's Retry-After replaces its backoff.
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 7 * time.Second, 4 * time.Second}
	got := clk.Slept()
	if len(got) != len(want) {
		t.Fatalf("slept %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sleep %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestPollGivesUpAfterMaxAttempts(t *testing.T) {
	s := &script{handlers: []http.HandlerFunc{reply(500, "")}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 5})
	if _, err := c.Result(context.Background(), "r1"); !IsTransient(err) {
		t.Fatalf("err = %v, want the last transient error", err)
	}
	if s.n.Load() != 5 {
		t.Errorf("server saw %d requests, want 5", s.n.Load())
	}
}

func TestPermanentErrorsNotRetried(t *testing.T) {
	for _, status := range []int{400, 401, 402, 403, 404, 422} {
		s := &script{handlers: []http.HandlerFunc{reply(status, `{}`)}}
		srv := httptest.NewServer(s)
		c := newTestClient(t, Options{BaseURL: srv.URL})
		_, err := c.Status(context.Background(), "r1")
		if err == nil || s.n.Load() != 1 {
			t.Errorf("%d: err %v after %d requests, want an error after 1", status, err, s.n.Load())
		}
		srv.Close()
	}
}

// TestRateLimitPausesEveryCall shows a 429 holding back a call that never
// saw it: B starts while A's pause is on and must sleep it out before
// anything reaches the server.
func TestRateLimitPausesEveryCall(t *testing.T) {
	for _, tt := range []struct {
		name       string
		retryAfter string
		want       time.Duration
	}{
		{"Retry-After seconds", "5", 5 * time.Second},
		{"Retry-After date", time.Date(2025, 1, 1, 0, 0, 9, 0, time.UTC).Format(http.TimeFormat), 9 * time.Second},
		{"no Retry-After: backoff", "", 375 * time.Millisecond}, // RateLimitBackoff(0, 500ms, 30s, 0.5)
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			start := clk.Now()
			var (
				mu       sync.Mutex
				arrivals []time.Duration // clock time of each request, from start
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				arrivals = append(arrivals, clk.Now().Sub(start))
				first := len(arrivals) == 1
				mu.Unlock()
				if first {
					if tt.retryAfter != "" {
						w.Header().Set("Retry-After", tt.retryAfter)
					}
					w.WriteHeader(429)
					return
				}
				io.WriteString(w, `{"status":"in_progress"}`)
			}))
			defer srv.Close()

			// Sleeps block until released, so B can be started while
			// A is still paused; time only moves when the test says so.
			sleeping := make(chan time.Duration)
			release := make(chan struct{})
			sleep := func(ctx context.Context, d time.Duration) error {
				sleeping <- d
				<-release
				return ctx.Err()
			}
			c := newTestClient(t, Options{BaseURL: srv.URL, Sleep: sleep, Now: clk.Now, Rand: func() float64 { return 0.5 }})

			errs := make(chan error, 2)
			go func() { _, err := c.Status(context.Background(), "a"); errs <- err }()
			if d := <-sleeping; d != tt.want {
				t.Errorf("A paused %v, want %v", d, tt.want)
			}
			go func() { _, err := c.Status(context.Background(), "b"); errs <- err }()
			if d := <-sleeping; d != tt.want {
				t.Errorf("B waited %v, want %v (the pause A was told)", d, tt.want)
			}
			mu.Lock()
			if len(arrivals) != 1 {
				t.Errorf("%d requests reached the server during the pause, want only the 429ed one", len(arrivals))
			}
			mu.Unlock()

			clk.mu.Lock()
			clk.t = clk.t.Add(tt.want)
			clk.mu.Unlock()
			close(release)
			for range 2 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(arrivals) != 3 {
				t.Fatalf("server saw %d requests, want 3", len(arrivals))
			}
			for _, at := range arrivals[1:] {
				if at < tt.want {
					t.Errorf("a request arrived at +%v, inside the %v pause", at, tt.want)
				}
			}
		})
	}
}

func TestRateLimiterSharedByCalls(t *testing.T) {
	srv := httptest.NewServer(reply(200, `{"status":"in_queue"}`))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, RPS: 50})
	begin := time.Now()
	var wg sync.WaitGroup
	for range 11 {
		wg.Go(func() {
			if _, err := c.Status(context.Background(), "r"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Burst 1: eleven calls at 50/s need ten intervals of 20ms.
	if took := time.Since(begin); took < 190*time.Millisecond {
		t.Errorf("11 calls at 50 rps took %v, want >= 200ms", took)
	}
}

func TestContextCancellation(t *testing.T) {
	t.Run("before the call", func(t *testing.T) {
		s := &script{handlers: []http.HandlerFunc{reply(200, okSubmit)}}
		srv := httptest.NewServer(s)
		defer srv.Close()
		c := newTestClient(t, Options{BaseURL: srv.URL})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Submit(ctx, "m/x", map[string]any{}, SubmitOptions{})
		if !errors.Is(err, context.Canceled) || s.n.Load() != 0 {
			t.Errorf("err = %v after %d requests; want context.Canceled and none", err, s.n.Load())
		}
		if !SubmitNotCreated(err) || IsTransient(err) {
			t.Errorf("a submit cancelled before sending: SubmitNotCreated %v, IsTransient %v; want true, false", SubmitNotCreated(err), IsTransient(err))
		}
	})
	t.Run("during the request", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body) // the server notices a closed connection only after the body
			cancel()
			<-r.Context().Done()
		}))
		defer srv.Close()
		c := newTestClient(t, Options{BaseURL: srv.URL})
		// A poll is cut off at once; so is a submit (TestSubmitCtxCutsThePOST).
		_, err := c.Result(ctx, "r1")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if IsTransient(err) {
			t.Errorf("a cancelled poll: IsTransient %v, want false", IsTransient(err))
		}
	})
	t.Run("during a 429 pause", func(t *testing.T) {
		s := &script{handlers: []http.HandlerFunc{reply(200, okSubmit)}}
		srv := httptest.NewServer(s)
		defer srv.Close()
		c, err := New(Options{BaseURL: srv.URL}) // real clock and sleep
		if err != nil {
			t.Fatal(err)
		}
		c.pause(time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err = c.Submit(ctx, "m/x", map[string]any{}, SubmitOptions{})
		if !errors.Is(err, context.DeadlineExceeded) || !SubmitNotCreated(err) || s.n.Load() != 0 {
			t.Errorf("err = %v after %d requests; want a not-sent deadline error and none", err, s.n.Load())
		}
	})
	t.Run("during backoff", func(t *testing.T) {
		srv := httptest.NewServer(reply(503, ""))
		defer srv.Close()
		ctx, cancel := context.WithCancel(context.Background())
		c := newTestClient(t, Options{BaseURL: srv.URL, Sleep: func(ctx context.Context, d time.Duration) error {
			cancel()
			return ctx.Err()
		}})
		if _, err := c.Status(ctx, "r"); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestAttemptTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	s := &script{handlers: []http.HandlerFunc{func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, Timeout: 50 * time.Millisecond, MaxAttempts: 3})
	_, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{})
	if !IsTransient(err) || SubmitNotCreated(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timed-out submit: %v; want transient, outcome open", err)
	}
	if s.n.Load() != 1 {
		t.Errorf("timed-out submit was sent %d times, want 1", s.n.Load())
	}
}

func TestRequestsOnTheWire(t *testing.T) {
	type seen struct {
		method, path, query, ctype, body string
	}
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Content-Type"), string(b)}
		io.WriteString(w, `{"request_id":"r1","status":"in_queue"}`)
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, base := range []string{srv.URL, srv.URL + "/", srv.URL + "/v1/"} {
		c := newTestClient(t, Options{BaseURL: base})
		if _, err := c.Submit(ctx, "wan-ai/wan-2-6/flash/image-to-video", map[string]any{"prompt": "a b", "seed": 7}, SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		want := seen{"POST", "/v1/models/wan-ai/wan-2-6/flash/image-to-video", "", "application/json", `{"prompt":"a b","seed":7}`}
		if got != want {
			t.Errorf("base %q: submit sent %+v, want %+v", base, got, want)
		}
	}
	c := newTestClient(t, Options{BaseURL: srv.URL})
	calls := []struct {
		do   func() error
		want seen
	}{
		{func() error { _, err := c.Status(ctx, "a/b"); return err }, seen{"GET", "/v1/requests/a%2Fb/status", "", "", ""}},
		{func() error { _, err := c.Result(ctx, "r1"); return err }, seen{"GET", "/v1/requests/r1/result", "include_cost=true", "", ""}},
		{func() error { _, err := c.Cancel(ctx, "r1"); return err }, seen{"POST", "/v1/requests/r1/cancel", "", "", ""}},
		{func() error { _, err := c.Model(ctx, "wan-ai/x y"); return err }, seen{"GET", "/v1/models/wan-ai/x%20y", "", "", ""}},
	}
	for _, call := range calls {
		if err := call.do(); err != nil {
			t.Fatal(err)
		}
		if got != call.want {
			t.Errorf("sent %+v, want %+v", got, call.want)
		}
	}
}

func TestBadArgumentsSendNothing(t *testing.T) {
	s := &script{handlers: []http.HandlerFunc{reply(200, okSubmit)}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL})
	ctx := context.Background()
	errs := []error{}
	for _, id := range []string{"", "a//b", "../x", "a/./b", "/a"} {
		_, err := c.Submit(ctx, id, map[string]any{}, SubmitOptions{})
		errs = append(errs, err)
	}
	_, err := c.Submit(ctx, "m/x", func() {}, SubmitOptions{}) // not JSON-encodable
	errs = append(errs, err)
	_, err = c.Status(ctx, "")
	errs = append(errs, err)
	for _, err := range errs {
		var e *Error
		if !errors.As(err, &e) || !e.NotSent || IsTransient(err) {
			t.Errorf("err = %v: want a not-sent, permanent *Error", err)
		}
	}
	if s.n.Load() != 0 {
		t.Errorf("%d requests sent", s.n.Load())
	}
}

func TestLenientDecoding(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/status"):
			io.WriteString(w, `{"status":"warming_up","queue_position":"soon","new_field":{"x":1}}`)
		case strings.HasSuffix(r.URL.Path, "/result"):
			io.WriteString(w, `{"request_id":"r1","status":"completed","output":{"video":"https://cdn.runcomfy.net/a.mp4"},
				"error":null,"cost":0.25,"created_at":"2025-01-01T00:00:00Z","extra":[1,2]}`)
		case strings.HasSuffix(r.URL.Path, "/cancel"):
			w.WriteHeader(http.StatusAccepted) // empty body
		default:
			io.WriteString(w, `{"model_id":"m/x","base_price_usd":0.05,"price_unit":"second","schema":{}}`)
		}
	}))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL})
	ctx := context.Background()
	st, err := c.Status(ctx, "r1")
	if err != nil || st.Status != "warming_up" || st.QueuePosition != nil {
		t.Errorf("Status = %+v, %v; want the unknown status verbatim", st, err)
	}
	res, err := c.Result(ctx, "r1")
	if err != nil || string(res.Cost) != "0.25" || !Finished(res.Status) {
		t.Fatalf("Result = %+v, %v", res, err)
	}
	if urls := lifecycle.Outputs(res.Output); len(urls) != 1 || urls[0] != "https://cdn.runcomfy.net/a.mp4" {
		t.Errorf("OutputURLs = %v", urls)
	}
	if ErrorText(res.Error) != "" {
		t.Errorf("ErrorText(null) = %q", ErrorText(res.Error))
	}
	if _, err := c.Cancel(ctx, "r1"); err != nil {
		t.Errorf("Cancel with an empty 202: %v", err)
	}
	m, err := c.Model(ctx, "m/x")
	if err != nil || string(m.BasePriceUSD) != "0.05" || m.PriceUnit != "second" {
		t.Errorf("Model = %+v, %v", m, err)
	}
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"ftp://x", "model-api.runcomfy.net", "http://", "://x", "https://h/?q=1", "https://user:pw@h"} {
		if _, err := New(Options{BaseURL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	c, err := New(Options{RPS: 0.5})
	if err != nil || c.base != DefaultBaseURL || c.limiter == nil {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, ""},
		{` null `, ""},
		{`"model crashed"`, "model crashed"},
		{`""`, ""},
		{`{ "code" : 3,  "msg":"x" }`, `{"code":3,"msg":"x"}`},
		{`[{"errorCode":1}]`, `[{"errorCode":1}]`},
		{`42`, "42"},
		{`{broken`, "{broken"},
	}
	for _, tt := range tests {
		if got := ErrorText(json.RawMessage(tt.in)); got != tt.want {
			t.Errorf("ErrorText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRateLimitStreakIsShared checks that 429s without Retry-After pause
// longer each time, whichever call they answer, and that an answer that is
// not a 429 starts over.
func TestRateLimitStreakIsShared(t *testing.T) {
	s := &script{handlers: []http.HandlerFunc{
		reply(429, ""), reply(429, ""), reply(429, ""), reply(200, `{"status":"in_queue"}`),
		reply(429, ""), reply(200, `{"status":"in_queue"}`),
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	clk := newClock()
	c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 2, Sleep: clk.Sleep, Now: clk.Now, Rand: func() float64 { return 1 }})
	ctx := context.Background()
	// Two calls share the first three 429s: the pauses double, 500ms, 1s, 2s.
	if _, err := c.Status(ctx, "a"); err == nil {
		t.Fatal("a: want the second 429 after two attempts")
	}
	if _, err := c.Status(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	// The 200 reset the streak: the next 429 pauses from the base again.
	if _, err := c.Status(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 500 * time.Millisecond}
	if got := clk.Slept(); !slices.Equal(got, want) {
		t.Fatalf("paused %v, want %v", got, want)
	}
}
