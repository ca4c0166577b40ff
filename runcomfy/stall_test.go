package runcomfy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// stallHeaders never answers: it reads the request and waits for the
// client to go away.
func stallHeaders(w http.ResponseWriter, r *http.Request) {
	io.ReadAll(r.Body)
	<-r.Context().Done()
}

// stallBody sends the headers of a 200 answer (with a Content-Length) and
// a first byte of the body, then waits for the client to go away.
func stallBody(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		io.WriteString(w, body[:1])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
}

// TestStalledPollIsRetried: a status or result call whose server stalls,
// before the headers or in the middle of the body, is cut by the attempt
// timeout and tried again.
func TestStalledPollIsRetried(t *testing.T) {
	const timeout = 200 * time.Millisecond
	const ok = `{"status":"in_queue"}`
	for _, tt := range []struct {
		name  string
		stall http.HandlerFunc
	}{
		{"no headers", stallHeaders},
		{"headers, then a stalled body", stallBody(ok)},
	} {
		for _, op := range []string{"status", "result"} {
			t.Run(op+", "+tt.name, func(t *testing.T) {
				s := &script{handlers: []http.HandlerFunc{tt.stall, tt.stall, reply(200, ok)}}
				srv := httptest.NewServer(s)
				defer srv.Close()
				c := newTestClient(t, Options{BaseURL: srv.URL, Timeout: timeout, MaxAttempts: 5})
				call := func() error {
					if op == "status" {
						_, err := c.Status(context.Background(), "r1")
						return err
					}
					_, err := c.Result(context.Background(), "r1")
					return err
				}
				start := time.Now()
				if err := call(); err != nil {
					t.Fatalf("%s after two stalls: %v", op, err)
				}
				if s.n.Load() != 3 {
					t.Errorf("%d requests, want 3 (two stalled, one answered)", s.n.Load())
				}
				if el := time.Since(start); el < 2*timeout || el > 20*timeout {
					t.Errorf("took %v; want about two timeouts of %v", el, timeout)
				}

				// Every attempt stalls: the error is a transient timeout.
				s2 := &script{handlers: []http.HandlerFunc{tt.stall}}
				srv2 := httptest.NewServer(s2)
				defer srv2.Close()
				c = newTestClient(t, Options{BaseURL: srv2.URL, Timeout: timeout, MaxAttempts: 2})
				err := call()
				if !IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) || s2.n.Load() != 2 {
					t.Errorf("always stalled: %v after %d requests; want a transient deadline error after 2", err, s2.n.Load())
				}
			})
		}
	}
}

// TestStalledSubmitIsNotRepeated: a submit whose request was written and
// whose answer never came, or stopped after the headers, is sent once and
// reported as sent with no answer: the job may exist.
func TestStalledSubmitIsNotRepeated(t *testing.T) {
	for _, tt := range []struct {
		name  string
		stall http.HandlerFunc
	}{
		{"no headers", stallHeaders},
		{"headers, then a stalled body", stallBody(okSubmit)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{handlers: []http.HandlerFunc{tt.stall, reply(200, okSubmit)}}
			srv := httptest.NewServer(s)
			defer srv.Close()
			c := newTestClient(t, Options{BaseURL: srv.URL, Timeout: 200 * time.Millisecond, MaxAttempts: 5})
			_, err := c.Submit(context.Background(), "m/x", map[string]any{"seed": 1}, SubmitOptions{})
			if s.n.Load() != 1 {
				t.Errorf("stalled submit sent %d times, want 1", s.n.Load())
			}
			e, ok := asError(err)
			if !ok {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.NotSent || e.HTTPStatus != 0 || SubmitNotCreated(err) {
				t.Errorf("NotSent %v, HTTPStatus %d, SubmitNotCreated %v; want sent, no answer (0), outcome open: %v",
					e.NotSent, e.HTTPStatus, SubmitNotCreated(err), err)
			}
			if !strings.Contains(err.Error(), "request sent, no answer") {
				t.Errorf("error %q does not say the request was sent and not answered", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %q is not a deadline", err)
			}
		})
	}
}
