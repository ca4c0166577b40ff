package runcomfy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The contract of a submission's two contexts: SubmitOptions.Intake bounds
// only the waits before sending (the first Ctrl-C: stop taking jobs), while
// Submit's ctx bounds the request on the wire too (the second Ctrl-C: stop
// now, even a POST whose answer is pending).

// Intake ends while the submit waits on the rate limiter: nothing is sent,
// BeforeSend never runs, and the error says so.
func TestSubmitIntakeCancelledOnLimiter(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, okSubmit)
	}))
	defer srv.Close()
	// One request every ~17 minutes, and its single token spent: the
	// submit below waits on the limiter until the intake ends.
	c := newTestClient(t, Options{BaseURL: srv.URL, Token: "tok-detach-1", RPS: 0.001})
	if !c.limiter.Allow() {
		t.Fatal("the limiter's first token was not there")
	}
	ctx, cancelCtx := context.WithCancel(context.Background())
	defer cancelCtx()
	intake, stopIntake := context.WithCancel(context.Background())
	var before atomic.Int64
	go func() {
		time.Sleep(20 * time.Millisecond)
		stopIntake()
	}()
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = c.Submit(ctx, "m/x", map[string]any{"prompt": "p"}, SubmitOptions{
			Intake:     intake,
			BeforeSend: func() error { before.Add(1); return nil },
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Submit still waiting on the limiter after the intake ended")
	}
	var e *Error
	if !errors.As(err, &e) || !e.NotSent || e.HTTPStatus != 0 {
		t.Fatalf("err = %v; want a not-sent *Error", err)
	}
	if !errors.Is(err, context.Canceled) || !SubmitNotCreated(err) || IsTransient(err) {
		t.Errorf("err = %v: Canceled %v, SubmitNotCreated %v, IsTransient %v; want true, true, false",
			err, errors.Is(err, context.Canceled), SubmitNotCreated(err), IsTransient(err))
	}
	if n := before.Load(); n != 0 {
		t.Errorf("BeforeSend ran %d times, want never", n)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("server got %d requests, want none", n)
	}
	if ctx.Err() != nil {
		t.Error("ending the intake cancelled ctx")
	}
}

// Intake ends while a 429 pause holds the submit: the same, and the
// answered 429 is the only request the server saw.
func TestSubmitIntakeCancelledDuringPause(t *testing.T) {
	// Without a rate every call pauses; with one (as the CLI always has),
	// only the refused call waits: either wait ends with intake.
	for _, rps := range []float64{0, 1000} {
		t.Run(fmt.Sprintf("rps=%v", rps), func(t *testing.T) { submitIntakeCancelledDuringPause(t, rps) })
	}
}

func submitIntakeCancelledDuringPause(t *testing.T, rps float64) {
	s := &script{handlers: []http.HandlerFunc{reply(429, "", "Retry-After", "30"), reply(200, okSubmit)}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	intake, stopIntake := context.WithCancel(context.Background())
	var slept []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		slept = append(slept, d)
		stopIntake() // the first Ctrl-C arrives during the pause
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("the wait outlived the intake")
		}
	}
	clk := newClock()
	c := newTestClient(t, Options{BaseURL: srv.URL, RPS: rps, Sleep: sleep, Now: clk.Now})
	var before atomic.Int64
	_, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{
		Intake:     intake,
		BeforeSend: func() error { before.Add(1); return nil },
	})
	if !errors.Is(err, context.Canceled) || !SubmitNotCreated(err) {
		t.Fatalf("err = %v; want a not-sent cancellation", err)
	}
	if e, _ := asError(err); e == nil || !e.NotSent {
		t.Errorf("err = %v; want NotSent", err)
	}
	if len(slept) != 1 || slept[0] != 30*time.Second {
		t.Errorf("slept %v, want the 30s pause once", slept)
	}
	if n := before.Load(); n != 1 {
		t.Errorf("BeforeSend ran %d times, want once (for the 429ed attempt)", n)
	}
	if n := s.n.Load(); n != 1 {
		t.Errorf("server got %d requests, want 1", n)
	}
}

// Intake ends after BeforeSend ran and the POST is on the wire: the POST
// is not cut, and the slow answer, with its request id, comes back.
func TestSubmitOnTheWireSurvivesIntakeCancel(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.ReadAll(r.Body)
		close(arrived)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, `{"request_id":"req-1"}`)
	}))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, Token: "tok-detach-1"})
	intake, stopIntake := context.WithCancel(context.Background())
	var before atomic.Int64
	go func() {
		<-arrived
		stopIntake()
		time.Sleep(50 * time.Millisecond)
		close(release)
	}()
	resp, err := c.Submit(context.Background(), "m/x", map[string]any{"prompt": "p"}, SubmitOptions{
		Intake:     intake,
		BeforeSend: func() error { before.Add(1); return nil },
	})
	if err != nil || resp.RequestID != "req-1" {
		t.Fatalf("Submit = %+v, %v; want the request id despite the ended intake", resp, err)
	}
	if intake.Err() == nil {
		t.Fatal("the intake was never cancelled: the test proves nothing")
	}
	if before.Load() != 1 || hits.Load() != 1 {
		t.Errorf("BeforeSend ran %d times, server got %d requests; want 1 and 1", before.Load(), hits.Load())
	}
}

// Submit's own ctx cancelled while the POST is on the wire cuts it: the
// error is a cancellation of a request that was sent, outcome open.
func TestSubmitCtxCutsThePOST(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.ReadAll(r.Body) // the whole request arrived
		close(arrived)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, `{"request_id":"req-1"}`)
	}))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, Token: "tok-detach-1"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	intake, stopIntake := context.WithCancel(context.Background())
	defer stopIntake()
	go func() {
		<-arrived
		// Give the client's writer the moment it needs to record that the
		// request was written, as it was.
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	done := make(chan struct{})
	var (
		resp SubmitResponse
		err  error
	)
	go func() {
		defer close(done)
		resp, err = c.Submit(ctx, "m/x", map[string]any{"prompt": "p"}, SubmitOptions{Intake: intake})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling ctx did not cut the POST")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Submit = %+v, %v; want an *Error", resp, err)
	}
	if !errors.Is(err, context.Canceled) || e.NotSent || e.HTTPStatus != 0 {
		t.Errorf("err = %v: Canceled %v, NotSent %v, HTTPStatus %d; want true, false, 0",
			err, errors.Is(err, context.Canceled), e.NotSent, e.HTTPStatus)
	}
	if SubmitNotCreated(err) || IsTransient(err) {
		t.Errorf("SubmitNotCreated %v, IsTransient %v; want false, false (outcome open, not retried)", SubmitNotCreated(err), IsTransient(err))
	}
	if !strings.Contains(err.Error(), "request sent, no answer") {
		t.Errorf("Error() = %q, want it to say the request was sent", err)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("server got %d requests, want 1", n)
	}
}

// A submission not yet sent when ctx is cancelled is not sent at all, and
// the error says no job was created.
func TestSubmitNotStartedAfterCancel(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, Token: "tok-detach-1"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var before atomic.Int64
	_, err := c.Submit(ctx, "m/x", map[string]any{}, SubmitOptions{
		Intake:     context.Background(),
		BeforeSend: func() error { before.Add(1); return nil },
	})
	if err == nil || !SubmitNotCreated(err) || hits.Load() != 0 || before.Load() != 0 {
		t.Fatalf("err %v (not created: %v), hits %d, BeforeSend ran %d times", err, SubmitNotCreated(err), hits.Load(), before.Load())
	}
}
