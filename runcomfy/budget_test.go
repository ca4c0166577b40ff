package runcomfy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestBodyBudgetBoundsConcurrentAnswers: the answers of concurrent calls
// are held in memory only as far as the client's budget allows; the others
// wait their turn, and every call gets its answer.
func TestBodyBudgetBoundsConcurrentAnswers(t *testing.T) {
	const (
		size   = 256 << 10
		calls  = 8
		budget = 3 * size
	)
	body := outputJSON(size)
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			release := make(chan struct{})
			var sent atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				}
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				sent.Add(1)
				select { // headers now, the body once the test has looked
				case <-release:
				case <-r.Context().Done():
					return
				}
				w.Write([]byte(body))
			}))
			defer srv.Close()
			// Before srv.Close, which waits for the handlers: a failure
			// below must not leave them stalled (it hung till go test's
			// timeout).
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			defer free()
			c := newTestClient(t, Options{BaseURL: srv.URL})
			c.bodies = newBodyBudget(budget)

			var wg sync.WaitGroup
			errs := make(chan error, calls)
			for range calls {
				wg.Go(func() {
					_, err := c.Result(context.Background(), "r1")
					errs <- err
				})
			}
			// Every call has its headers and is reading or waiting to.
			waitFor(t, "every answer's headers", func() bool { return sent.Load() == calls })
			want := int64(calls * probeSize) // every call's first probe
			waitFor(t, "the budget to fill", func() bool { return c.bodies.held.Load() == want })
			time.Sleep(20 * time.Millisecond) // room for a read that should not start
			if got := c.bodies.held.Load(); got != want {
				t.Errorf("%d bytes reserved while bodies are stalled, want %d", got, want)
			}
			free()
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("call: %v", err)
				}
			}
			if peak := c.bodies.peak.Load(); peak > budget {
				t.Errorf("%d bytes of answers reserved at once, over the budget of %d", peak, budget)
			} else {
				t.Logf("peak reserved: %d bytes of %d", peak, budget)
			}
			if held := c.bodies.held.Load(); held != 0 {
				t.Errorf("%d bytes still reserved after every call returned", held)
			}
		})
	}
}

// TestWaitingForMemoryIsNotATimeout: a call that waits for other calls'
// answers to be read is not timed out for it: the attempt's timer stands
// still meanwhile. Two answers that each take two thirds of the timeout to
// arrive are read in turn while a third call waits for both, longer than
// the timeout; the second waits for the first, then reads for as long.
func TestWaitingForMemoryIsNotATimeout(t *testing.T) {
	const (
		timeout = 600 * time.Millisecond
		drip    = 400 * time.Millisecond // < timeout: each read fits
		pieces  = 8
	)
	body := outputJSON(1 << 20)
	var headers atomic.Int64
	firstDone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		headers.Add(1)
		switch r.URL.Path {
		case "/v1/requests/fast/result":
			w.Write([]byte(body))
			return
		case "/v1/requests/slow-1/result":
			defer close(firstDone)
		case "/v1/requests/slow-2/result":
			// Its body starts once the first is out, when the budget
			// lets the second call read it: else the socket's buffers
			// would hold it while the call waits.
			select {
			case <-firstDone:
			case <-r.Context().Done():
				return
			}
		}
		n := len(body) / pieces
		for i := range pieces {
			time.Sleep(drip / pieces)
			end := (i + 1) * n
			if i == pieces-1 {
				end = len(body)
			}
			if _, err := w.Write([]byte(body[i*n : end])); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, Timeout: timeout, MaxAttempts: 1})
	c.bodies = newBodyBudget(1 << 20) // one answer at a time

	var wg sync.WaitGroup
	errs := make([]error, 3)
	call := func(i int, id string) {
		wg.Go(func() { _, errs[i] = c.Result(context.Background(), id) })
	}
	start := time.Now()
	call(0, "slow-1")
	waitFor(t, "the first answer to hold the budget", func() bool { return c.bodies.held.Load() == 1<<20 })
	call(1, "slow-2")
	waitFor(t, "the second answer's headers", func() bool { return headers.Load() == 2 })
	time.Sleep(50 * time.Millisecond) // it queues for memory before the third
	call(2, "fast")
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if el := time.Since(start); el < timeout+drip/2 {
		t.Logf("took %v: the calls did not wait longer than the timeout, so this run proves little", el)
	}
}

// TestSmallAnswersDoNotWaitForResults: while stalled result answers hold
// the whole budget, a submit, a status and a cancel still get their answers
// (a submit's holds the id of a job just paid for; found in review, it
// queued behind the results' reservations).
func TestSmallAnswersDoNotWaitForResults(t *testing.T) {
	const size = 1 << 20
	body := outputJSON(size)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/requests/big/result":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-release:
				w.Write([]byte(body))
			case <-r.Context().Done():
			}
		case "/v1/requests/r1/status":
			io.WriteString(w, `{"request_id":"r1","status":"in_queue"}`)
		case "/v1/requests/r1/cancel":
			io.WriteString(w, `{"request_id":"r1","outcome":"cancelled"}`)
		default:
			io.WriteString(w, okSubmit)
		}
	}))
	defer srv.Close()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 1})
	c.bodies = newBodyBudget(probeSize) // the probe of one result fills it

	var wg sync.WaitGroup
	for range 2 { // one reading, one waiting in line for memory
		wg.Go(func() {
			if _, err := c.Result(context.Background(), "big"); err != nil {
				t.Errorf("result: %v", err)
			}
		})
	}
	waitFor(t, "a result to hold the budget", func() bool { return c.bodies.held.Load() == probeSize })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Submit(ctx, "m/x", map[string]any{}, SubmitOptions{})
	if err != nil || res.RequestID != "r1" {
		t.Errorf("submit beside a full budget = %+v, %v; want request r1", res, err)
	}
	if _, err := c.Status(ctx, "r1"); err != nil {
		t.Errorf("status beside a full budget: %v", err)
	}
	if _, err := c.Cancel(ctx, "r1"); err != nil {
		t.Errorf("cancel beside a full budget: %v", err)
	}
	free()
	wg.Wait()
	if held := c.bodies.held.Load(); held != 0 {
		t.Errorf("%d bytes still reserved after every call returned", held)
	}
}
