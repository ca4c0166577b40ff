package runcomfytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"comfybatch/runcomfy"
)

// TestResultBodyPad: result answers carry an ignored field of the asked
// size, stay valid JSON with a matching Content-Length, and decode to what
// they would say without it. Other answers are not padded.
func TestResultBodyPad(t *testing.T) {
	const pad = 3 << 20
	a := newWireAPI(t, Config{ResultBodyPad: pad})
	id := a.submitID(`{"prompt":"a"}`)

	resp := a.doResp("GET", "/v1/requests/"+id+"/result?include_cost=true", "")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("HTTP %d, Content-Length %q for %d bytes", resp.StatusCode, resp.Header.Get("Content-Length"), len(body))
	}
	if len(body) < pad || len(body) > pad+4096 {
		t.Errorf("result answer of %d bytes, want %d of padding plus the answer", len(body), pad)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("padded answer is not a JSON object: %v", err)
	}
	var padding string
	if err := json.Unmarshal(fields["padding"], &padding); err != nil || len(padding) != pad {
		t.Errorf("padding field of %d characters (%v), want %d", len(padding), err, pad)
	}
	if field(t, string(body), "status") != `"completed"` || field(t, string(body), "request_id") != `"`+id+`"` {
		t.Errorf("padded answer lost its fields: %.200s…", body)
	}

	if _, st := a.do("GET", "/v1/requests/"+id+"/status", ""); len(st) > 4096 {
		t.Errorf("status answer of %d bytes: only result answers are padded", len(st))
	}

	// The client reads it as the same answer.
	c, err := runcomfy.New(runcomfy.Options{BaseURL: a.base})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Result(context.Background(), id)
	if err != nil || res.Status != "completed" || len(res.Output) == 0 {
		t.Errorf("client read %+v, %v; want a completed result with its output", res, err)
	}
}

// TestStallBody: result answers send their headers at once and their body
// StallBody later; a client that gives up meanwhile ends the wait.
func TestStallBody(t *testing.T) {
	const stall = 300 * time.Millisecond
	a := newWireAPI(t, Config{StallBody: stall})
	id := a.submitID(`{"prompt":"a"}`)

	start := time.Now()
	resp := a.doResp("GET", "/v1/requests/"+id+"/result", "")
	headers := time.Since(start)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	whole := time.Since(start)
	if err != nil || resp.StatusCode != 200 || field(t, string(body), "status") != `"completed"` {
		t.Fatalf("HTTP %d, %v: %s", resp.StatusCode, err, body)
	}
	if headers >= stall || whole < stall {
		t.Errorf("headers after %v, body after %v; want headers before and body after %v", headers, whole, stall)
	}

	// Status answers do not stall.
	start = time.Now()
	if code, _ := a.do("GET", "/v1/requests/"+id+"/status", ""); code != 200 || time.Since(start) >= stall {
		t.Errorf("status: HTTP %d after %v; want an answer at once", code, time.Since(start))
	}

	// A client with a shorter timeout is cut off, and its retries too;
	// the server is not kept waiting (Close would block on it).
	a.s.Update(func(c *Config) { c.StallBody = time.Hour })
	c, err := runcomfy.New(runcomfy.Options{BaseURL: a.base, Timeout: 100 * time.Millisecond, MaxAttempts: 2,
		BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = c.Result(context.Background(), id)
	if !runcomfy.IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("result stalled for an hour: %v; want a transient timeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("two attempts of 100ms took %v", el)
	}
	if n := a.s.Stats().Result; n != 3 {
		t.Errorf("%d result requests, want 3", n)
	}
	done := make(chan struct{})
	go func() { a.s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("Close hangs on a stalled answer whose client went away")
	}
}

// TestResultBodyPadAndStall: both at once, as an end-to-end test would
// use them, through a plain HTTP client that reads it all.
func TestResultBodyPadAndStall(t *testing.T) {
	a := newWireAPI(t, Config{ResultBodyPad: 1 << 20, StallBody: 50 * time.Millisecond})
	id := a.submitID(`{"prompt":"a"}`)
	code, body := a.do("GET", "/v1/requests/"+id+"/result", "")
	if code != 200 || len(body) < 1<<20 || !strings.Contains(body, `"status":"completed"`) {
		t.Errorf("HTTP %d, %d bytes", code, len(body))
	}
}

// MaxRunning: the account runs n jobs at once, first come first served;
// the others wait their turn in the queue.
func TestMaxRunning(t *testing.T) {
	now := time.Unix(1000, 0)
	s := New(Config{MaxRunning: 2, RunTime: 10 * time.Second, Now: func() time.Time { return now }})
	for i := range 5 {
		s.mu.Lock()
		s.createLocked("m", json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)))
		s.mu.Unlock()
	}
	starts := map[time.Duration]int{}
	for _, j := range s.jobs {
		starts[j.queueEnd.Sub(now)]++
		if j.runEnd.Sub(j.queueEnd) != 10*time.Second {
			t.Fatalf("run time %v", j.runEnd.Sub(j.queueEnd))
		}
	}
	if starts[0] != 2 || starts[10*time.Second] != 2 || starts[20*time.Second] != 1 {
		t.Fatalf("starts %v: want 2 at once, 2 after 10 s, 1 after 20 s", starts)
	}
	if b := s.Busy(); b != 50*time.Second {
		t.Fatalf("busy %v", b)
	}
}
