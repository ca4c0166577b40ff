package runcomfy

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// logRecorder keeps every record logged through it.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// warnings returns the attributes of each Warn record whose message
// mentions the Retry-After cap.
func (h *logRecorder) capWarnings() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.recs {
		if r.Level != slog.LevelWarn {
			continue
		}
		attrs := map[string]string{"msg": r.Message}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		if _, ok := attrs["cap"]; ok {
			out = append(out, attrs)
		}
	}
	return out
}

// TestRetryAfterCapped: a Retry-After past the cap, as delay-seconds or as
// an HTTP date, is waited out for the cap only, and each call says so once.
func TestRetryAfterCapped(t *testing.T) {
	clk := newClock()
	far := clk.Now().Add(1000 * time.Hour).Format(http.TimeFormat)
	s := &script{handlers: []http.HandlerFunc{
		// Call 1 (status): a 429 and a 503, both asking for 11.6 days.
		reply(429, `{"error_message":"slow down"}`, "Retry-After", "999999"),
		reply(503, `{}`, "Retry-After", "999999"),
		reply(200, `{"status":"in_queue"}`),
		// Call 2 (result): an HTTP date 1000 hours ahead, then a sane value.
		reply(503, `{}`, "Retry-After", far),
		reply(503, `{}`, "Retry-After", "7"),
		reply(200, `{"status":"in_queue"}`),
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	logs := &logRecorder{}
	c := newTestClient(t, Options{BaseURL: srv.URL, Now: clk.Now, Sleep: clk.Sleep, Logger: slog.New(logs)})

	if _, err := c.Status(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if got, want := clk.Slept(), []time.Duration{10 * time.Minute, 10 * time.Minute}; !slices.Equal(got, want) {
		t.Errorf("delta-seconds: slept %v, want %v", got, want)
	}
	w := logs.capWarnings()
	if len(w) != 1 {
		t.Fatalf("after one call with two clipped Retry-After: %d cap warnings, want 1: %v", len(w), w)
	}
	if w[0]["asked"] != "999999" || w[0]["cap"] != "10m0s" || w[0]["op"] != "status" {
		t.Errorf("warning %v: want asked=999999 cap=10m0s op=status", w[0])
	}

	if _, err := c.Result(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if got, want := clk.Slept()[2:], []time.Duration{10 * time.Minute, 7 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("HTTP date: slept %v, want %v", got, want)
	}
	w = logs.capWarnings()
	if len(w) != 2 {
		t.Fatalf("after two calls: %d cap warnings, want 2: %v", len(w), w)
	}
	if w[1]["asked"] != far || w[1]["cap"] != "10m0s" || w[1]["op"] != "result" {
		t.Errorf("warning %v: want asked=%q cap=10m0s op=result", w[1], far)
	}
	for _, r := range w {
		t.Logf("%v", r)
	}
}

// TestRetryAfterUnderCapNotWarned: a value within the cap is honoured
// exactly and logged as nothing unusual.
func TestRetryAfterUnderCapNotWarned(t *testing.T) {
	clk := newClock()
	s := &script{handlers: []http.HandlerFunc{
		reply(503, `{}`, "Retry-After", "600"),
		reply(200, `{"status":"in_queue"}`),
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	logs := &logRecorder{}
	c := newTestClient(t, Options{BaseURL: srv.URL, Now: clk.Now, Sleep: clk.Sleep, Logger: slog.New(logs)})
	if _, err := c.Status(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if got, want := clk.Slept(), []time.Duration{10 * time.Minute}; !slices.Equal(got, want) {
		t.Errorf("slept %v, want %v", got, want)
	}
	if w := logs.capWarnings(); len(w) != 0 {
		t.Errorf("Retry-After at the cap: %d warnings, want none: %v", len(w), w)
	}
}

// TestRetryAfterOnAGiveUpNotWarned: a submit answered 503 is not sent
// again, so a Retry-After past the cap is no wait to warn of (found in
// review: it logged "waiting the cap at most" and returned at once).
func TestRetryAfterOnAGiveUpNotWarned(t *testing.T) {
	clk := newClock()
	s := &script{handlers: []http.HandlerFunc{reply(503, `{}`, "Retry-After", "99999")}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	logs := &logRecorder{}
	c := newTestClient(t, Options{BaseURL: srv.URL, Now: clk.Now, Sleep: clk.Sleep, Logger: slog.New(logs)})
	if _, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{}); err == nil {
		t.Fatal("a 503 submit succeeded")
	}
	if n, slept := s.n.Load(), clk.Slept(); n != 1 || len(slept) != 0 {
		t.Fatalf("%d requests, slept %v; want one request and no wait", n, slept)
	}
	if w := logs.capWarnings(); len(w) != 0 {
		t.Errorf("a call that did not wait: %d cap warnings, want none: %v", len(w), w)
	}
}
