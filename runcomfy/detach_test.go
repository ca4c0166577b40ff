package runcomfy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A submission already on the wire must reach its answer even when the run
// is interrupted: the interrupt cancels ctx while the server is still
// working, and the request id must still come back.
func TestSubmitOnTheWireSurvivesCancel(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		w.Write([]byte(`{"request_id":"req-1"}`))
	}))
	defer srv.Close()
	c, err := New(Options{BaseURL: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
		time.Sleep(50 * time.Millisecond)
		close(release)
	}()
	resp, err := c.Submit(ctx, "m/x", map[string]any{"prompt": "p"})
	if err != nil || resp.RequestID != "req-1" {
		t.Fatalf("Submit = %+v, %v; want the request id despite the cancel", resp, err)
	}
}

// A submission not yet sent when ctx is cancelled is not sent at all, and
// the error says no job was created.
func TestSubmitNotStartedAfterCancel(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer srv.Close()
	c, _ := New(Options{BaseURL: srv.URL, Token: "t"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Submit(ctx, "m/x", map[string]any{})
	if err == nil || !SubmitNotCreated(err) || hits != 0 {
		t.Fatalf("err %v (not created: %v), hits %d", err, SubmitNotCreated(err), hits)
	}
}
