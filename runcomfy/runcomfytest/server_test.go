package runcomfytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
)

const model = "wan-ai/wan-2-6/flash/image-to-video"

// fakeClock is the server's clock, moved by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start serves cfg and returns the server and a client for it whose
// backoffs are a few milliseconds.
func start(t *testing.T, cfg Config, o runcomfy.Options) (*Server, *runcomfy.Client) {
	t.Helper()
	s := New(cfg)
	o.BaseURL = s.Start()
	t.Cleanup(s.Close)
	if o.BaseDelay == 0 {
		o.BaseDelay, o.MaxDelay = time.Millisecond, 4*time.Millisecond
	}
	c, err := runcomfy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func input(i int) map[string]any {
	return map[string]any{"prompt": fmt.Sprintf("clip %d", i), "img_url": "https://example.com/a.png", "seed": i}
}

func download(t *testing.T, hc *http.Client, url string, header ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestLifecycleOverTime(t *testing.T) {
	clk := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, c := start(t, Config{
		QueueTime: 10 * time.Second, RunTime: 20 * time.Second,
		ExtraStatus: "warming_up", CostUSD: 0.25, Token: "tok", Now: clk.Now,
	}, runcomfy.Options{Token: "tok"})
	ctx := context.Background()

	sub, err := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(sub.StatusURL, "/v1/requests/"+string(sub.RequestID)+"/status") {
		t.Errorf("status_url %q", sub.StatusURL)
	}
	for _, c := range string(sub.RequestID) {
		if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", c) {
			t.Fatalf("request id %q has %q", string(sub.RequestID), c)
		}
	}
	status := func() runcomfy.StatusResponse {
		t.Helper()
		st, err := c.Status(ctx, string(sub.RequestID))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	if st := status(); st.Status != runcomfy.StatusInQueue || st.QueuePosition == nil || *st.QueuePosition != 1 {
		t.Errorf("at 0s: %+v, want in_queue at position 1", st)
	}
	res, err := c.Result(ctx, string(sub.RequestID))
	if err != nil || res.Status != runcomfy.StatusInQueue || len(res.Output) != 0 || len(res.Cost) != 0 {
		t.Errorf("early result: %+v, %v; want the status and no output", res, err)
	}
	clk.Advance(10 * time.Second)
	if st := status(); st.Status != "warming_up" {
		t.Errorf("at 10s: %q, want the extra status once", st.Status)
	}
	if st := status(); st.Status != runcomfy.StatusInProgress || st.QueuePosition != nil {
		t.Errorf("at 10s again: %+v, want in_progress", st)
	}
	clk.Advance(20 * time.Second)
	if st := status(); st.Status != runcomfy.StatusCompleted {
		t.Errorf("at 30s: %q, want completed", st.Status)
	}

	res, err = c.Result(ctx, string(sub.RequestID))
	if err != nil {
		t.Fatal(err)
	}
	urls := lifecycle.Outputs(res.Output)
	if len(urls) != 1 || string(res.Cost) != "0.25" || res.ModelID != model || res.FinishedAt == "" {
		t.Fatalf("result %+v, urls %v", res, urls)
	}
	if !strings.HasPrefix(urls[0], "http://localhost:") || !strings.Contains(urls[0], "/files/"+string(sub.RequestID)+"/0.mp4") {
		t.Errorf("output URL %q: want localhost (the API is 127.0.0.1) and /files/<id>/0.mp4", urls[0])
	}

	// The client's HTTP client must not carry the token to the files host.
	resp, body, err := download(t, c.HTTPClient(), urls[0])
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") != "video/mp4" || resp.ContentLength != int64(len(body)) {
		t.Errorf("download headers %v", resp.Header)
	}
	if !bytes.Equal(body, OutputBytes(string(sub.RequestID), 0)) {
		t.Error("downloaded bytes differ from OutputBytes")
	}
	st := s.Stats()
	if st.Files != 1 || st.FilesWithAuth != 0 || st.Submits != 1 || st.Created != 1 || st.Status != 4 || st.Result != 2 {
		t.Errorf("stats %+v", st)
	}
	jobs := s.Jobs()
	if len(jobs) != 1 || jobs[0].RequestID != string(sub.RequestID) || jobs[0].Status != runcomfy.StatusCompleted || jobs[0].Model != model {
		t.Errorf("Jobs() = %+v", jobs)
	}
}

func TestOutputBytesIsAnMP4(t *testing.T) {
	a, b := OutputBytes("r1", 0), OutputBytes("r1", 1)
	if string(a[4:12]) != "ftypisom" || bytes.Equal(a, b) || !bytes.Equal(a, OutputBytes("r1", 0)) {
		t.Error("want an ftyp box first, content differing by n and stable")
	}
	if len(a) < 2048 || len(a) > 16<<10 {
		t.Errorf("size %d, want a few KB (a tiny playable clip: TestViewInBrowser plays it)", len(a))
	}
	// The boxes cover the file exactly.
	for off := 0; off < len(a); {
		size := int(a[off])<<24 | int(a[off+1])<<16 | int(a[off+2])<<8 | int(a[off+3])
		if size < 8 || off+size > len(a) {
			t.Fatalf("box at %d has size %d in a %d-byte file", off, size, len(a))
		}
		off += size
	}
}

func TestOutcomes(t *testing.T) {
	ctx := context.Background()
	t.Run("completed without output", func(t *testing.T) {
		_, c := start(t, Config{FailureRate: 1}, runcomfy.Options{})
		sub, _ := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
		res, err := c.Result(ctx, string(sub.RequestID))
		if err != nil || res.Status != runcomfy.StatusCompleted || lifecycle.Outputs(res.Output) != nil || runcomfy.ErrorText(res.Error) == "" {
			t.Errorf("result %+v, %v; want completed, no URL, an error", res, err)
		}
	})
	t.Run("failed", func(t *testing.T) {
		_, c := start(t, Config{FailedStatusRate: 1}, runcomfy.Options{})
		sub, _ := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
		st, _ := c.Status(ctx, string(sub.RequestID))
		res, err := c.Result(ctx, string(sub.RequestID))
		if err != nil || st.Status != runcomfy.StatusFailed || res.Status != runcomfy.StatusFailed || runcomfy.ErrorText(res.Error) == "" {
			t.Errorf("status %+v, result %+v, %v", st, res, err)
		}
	})
	t.Run("several outputs", func(t *testing.T) {
		_, c := start(t, Config{OutputsPerJob: 3}, runcomfy.Options{})
		sub, _ := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
		res, _ := c.Result(ctx, string(sub.RequestID))
		urls := lifecycle.Outputs(res.Output)
		if len(urls) != 3 || !bytes.Contains(res.Output, []byte(`"videos"`)) {
			t.Fatalf("output %s", res.Output)
		}
		_, body, err := download(t, c.HTTPClient(), urls[2])
		if err != nil || !bytes.Equal(body, OutputBytes(string(sub.RequestID), 2)) {
			t.Errorf("third file: %v", err)
		}
	})
}

func TestDroppedSubmitCreatesTheJob(t *testing.T) {
	s, c := start(t, Config{DropSubmitRate: 1}, runcomfy.Options{})
	_, err := c.Submit(context.Background(), model, input(1), runcomfy.SubmitOptions{})
	if err == nil {
		t.Fatal("submit succeeded")
	}
	if runcomfy.SubmitNotCreated(err) {
		t.Errorf("SubmitNotCreated(%v) = true, but the job exists", err)
	}
	if !runcomfy.IsTransient(err) {
		t.Errorf("IsTransient(%v) = false for a cut connection", err)
	}
	if jobs := s.Jobs(); len(jobs) != 1 || jobs[0].Model != model {
		t.Errorf("Jobs() = %+v, want the created job", jobs)
	}
	if st := s.Stats(); st.Submits != 1 || st.Created != 1 || st.Dropped != 1 {
		t.Errorf("stats %+v, want one submit, created and dropped (no client retry)", st)
	}
}

func TestTruncatedDownload(t *testing.T) {
	s, c := start(t, Config{TruncateRate: 1}, runcomfy.Options{})
	ctx := context.Background()
	sub, _ := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
	res, _ := c.Result(ctx, string(sub.RequestID))
	url := lifecycle.Outputs(res.Output)[0]
	resp, body, err := download(t, c.HTTPClient(), url)
	if err == nil {
		t.Fatalf("read %d bytes without error, want a cut body", len(body))
	}
	full := len(OutputBytes(string(sub.RequestID), 0))
	if !errors.Is(err, io.ErrUnexpectedEOF) || resp.ContentLength != int64(full) || len(body) >= full {
		t.Errorf("err %v, Content-Length %d, got %d of %d bytes", err, resp.ContentLength, len(body), full)
	}
	if s.Stats().Truncated != 1 {
		t.Errorf("stats %+v", s.Stats())
	}
}

func TestRangeRequests(t *testing.T) {
	_, c := start(t, Config{}, runcomfy.Options{})
	ctx := context.Background()
	sub, _ := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
	res, _ := c.Result(ctx, string(sub.RequestID))
	url := lifecycle.Outputs(res.Output)[0]
	data := OutputBytes(string(sub.RequestID), 0)
	size := len(data)
	tests := []struct {
		rangeHdr     string
		status       int
		contentRange string
		body         []byte
	}{
		{"bytes=100-", 206, fmt.Sprintf("bytes 100-%d/%d", size-1, size), data[100:]},
		{"bytes=0-", 206, fmt.Sprintf("bytes 0-%d/%d", size-1, size), data},
		{"bytes=10-19", 206, fmt.Sprintf("bytes 10-19/%d", size), data[10:20]},
		{"bytes=10-999999", 206, fmt.Sprintf("bytes 10-%d/%d", size-1, size), data[10:]},
		{fmt.Sprintf("bytes=%d-", size), 416, fmt.Sprintf("bytes */%d", size), nil},
		{"bytes=0-1,5-6", 200, "", data}, // multiple ranges: ignored
		{"items=1-", 200, "", data},
	}
	for _, tt := range tests {
		resp, body, err := download(t, c.HTTPClient(), url, "Range", tt.rangeHdr)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.status || resp.Header.Get("Content-Range") != tt.contentRange || !bytes.Equal(body, tt.body) {
			t.Errorf("Range %q: %d %q, %d bytes; want %d %q, %d bytes",
				tt.rangeHdr, resp.StatusCode, resp.Header.Get("Content-Range"), len(body), tt.status, tt.contentRange, len(tt.body))
		}
	}
}

func TestExpiredURLIsRefreshedByResult(t *testing.T) {
	s, c := start(t, Config{ExpireRate: 1}, runcomfy.Options{})
	ctx := context.Background()
	sub, _ := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
	res, _ := c.Result(ctx, string(sub.RequestID))
	first := lifecycle.Outputs(res.Output)[0]
	if resp, _, _ := download(t, c.HTTPClient(), first); resp.StatusCode != http.StatusGone {
		t.Fatalf("first URL answered %d, want 410", resp.StatusCode)
	}
	res, _ = c.Result(ctx, string(sub.RequestID))
	fresh := lifecycle.Outputs(res.Output)[0]
	resp, body, err := download(t, c.HTTPClient(), fresh)
	if err != nil || fresh == first || resp.StatusCode != 200 || !bytes.Equal(body, OutputBytes(string(sub.RequestID), 0)) {
		t.Errorf("fresh URL %q (first %q): %v %v", fresh, first, resp.Status, err)
	}
	if s.Stats().Expired != 1 {
		t.Errorf("stats %+v", s.Stats())
	}
}

func TestCancel(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	s, c := start(t, Config{QueueTime: time.Minute, RunTime: time.Minute, Now: clk.Now}, runcomfy.Options{})
	ctx := context.Background()
	queued, _ := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
	running, _ := c.Submit(ctx, model, input(2), runcomfy.SubmitOptions{})
	clk.Advance(30 * time.Second)
	third, _ := c.Submit(ctx, model, input(3), runcomfy.SubmitOptions{}) // queued until 1m30s
	clk.Advance(40 * time.Second)                                        // the first two are running now

	res, err := c.Cancel(ctx, string(third.RequestID))
	if err != nil || res.Outcome != "cancelled" || res.Status != runcomfy.StatusCancelled {
		t.Errorf("cancel queued: %+v, %v", res, err)
	}
	res, err = c.Cancel(ctx, string(running.RequestID))
	if err != nil || res.Outcome != "not_cancellable" {
		t.Errorf("cancel running: %+v, %v", res, err)
	}
	clk.Advance(10 * time.Minute)
	if st, _ := c.Status(ctx, string(third.RequestID)); st.Status != runcomfy.StatusCancelled {
		t.Errorf("cancelled job later reports %q", st.Status)
	}
	if st, _ := c.Status(ctx, string(queued.RequestID)); st.Status != runcomfy.StatusCompleted {
		t.Errorf("running job reports %q, want completed", st.Status)
	}
	if res, _ := c.Cancel(ctx, string(queued.RequestID)); res.Outcome != "not_cancellable" {
		t.Errorf("cancel finished: %+v", res)
	}
	if s.Stats().Cancel != 3 {
		t.Errorf("stats %+v", s.Stats())
	}
}

func TestUnknownRequest(t *testing.T) {
	s, c := start(t, Config{}, runcomfy.Options{})
	ctx := context.Background()
	_, err1 := c.Status(ctx, "nope")
	_, err2 := c.Result(ctx, "nope")
	_, err3 := c.Cancel(ctx, "nope")
	for _, err := range []error{err1, err2, err3} {
		var e *runcomfy.Error
		if !errors.As(err, &e) || e.Code != runcomfy.CodeNotFound || !runcomfy.IsNotFound(err) {
			t.Errorf("err = %v, want 404001", err)
		}
	}
	if s.Stats().NotFound != 3 {
		t.Errorf("stats %+v", s.Stats())
	}
}

func TestAccountErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("bad token", func(t *testing.T) {
		s, c := start(t, Config{Token: "right"}, runcomfy.Options{Token: "wrong"})
		_, err := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
		var e *runcomfy.Error
		if !errors.As(err, &e) || e.HTTPStatus != 401 || e.Code != runcomfy.CodeBadToken || !runcomfy.IsAccountError(err) {
			t.Errorf("err = %v", err)
		}
		if st := s.Stats(); st.Unauthorized != 1 || st.Created != 0 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("balance", func(t *testing.T) {
		s, c := start(t, Config{BalanceJobs: 2}, runcomfy.Options{})
		for i := range 2 {
			if _, err := c.Submit(ctx, model, input(i), runcomfy.SubmitOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.Submit(ctx, model, input(3), runcomfy.SubmitOptions{})
		var e *runcomfy.Error
		if !errors.As(err, &e) || e.Code != runcomfy.CodeNoBalance || !runcomfy.IsAccountError(err) {
			t.Errorf("err = %v, want 400002", err)
		}
		if st := s.Stats(); st.Created != 2 || st.NoBalance != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestModelPrice(t *testing.T) {
	_, c := start(t, Config{PriceUSD: 0.08}, runcomfy.Options{})
	m, err := c.Model(context.Background(), model)
	if err != nil || m.ModelID != model || string(m.BasePriceUSD) != "0.08" || m.PriceUnit != "second" {
		t.Errorf("Model = %+v, %v", m, err)
	}
}

func TestBadInputRejected(t *testing.T) {
	s, c := start(t, Config{}, runcomfy.Options{})
	for _, in := range []any{[]int{1}, "x", nil} {
		if _, err := c.Submit(context.Background(), model, in, runcomfy.SubmitOptions{}); err == nil {
			t.Errorf("input %v accepted", in)
		}
	}
	if s.Stats().Created != 0 {
		t.Error("a job was created")
	}
}

func TestSubmissionsByInputAndDuplicates(t *testing.T) {
	s, c := start(t, Config{}, runcomfy.Options{})
	ctx := context.Background()
	bodies := []string{`{"b":2,"a":[1.50,{"y":1,"x":0}]}`, `{"a":[1.50,{"x":0,"y":1}],"b":2}`, `{"b":2,"a":[1.5,{"y":1,"x":0}]}`}
	for _, b := range bodies {
		if _, err := c.Submit(ctx, model, json.RawMessage(b), runcomfy.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Submit(ctx, "other/model", json.RawMessage(bodies[0]), runcomfy.SubmitOptions{}); err != nil {
		t.Fatal(err)
	}
	got := s.SubmissionsByInput()
	want := map[string]int{
		model + "\n" + `{"a":[1.50,{"x":0,"y":1}],"b":2}`:         2, // same object, keys in another order
		model + "\n" + `{"a":[1.5,{"x":0,"y":1}],"b":2}`:          1, // numbers kept as written
		"other/model" + "\n" + `{"a":[1.50,{"x":0,"y":1}],"b":2}`: 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SubmissionsByInput = %v, want %v", got, want)
	}
	if s.Duplicates() != 1 {
		t.Errorf("Duplicates = %d, want 1", s.Duplicates())
	}
}

func TestMisbehaviourIsSurvivable(t *testing.T) {
	// With 429s and 5xx on a quarter of the calls each, a client with
	// retries still gets every job through, and nothing is created twice.
	s, c := start(t, Config{Rate429: 0.25, Rate5xx: 0.25, Seed: 7}, runcomfy.Options{MaxAttempts: 50})
	ctx := context.Background()
	for i := range 40 {
		sub, err := c.Submit(ctx, model, input(i), runcomfy.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Status(ctx, string(sub.RequestID)); err != nil {
			t.Fatal(err)
		}
		res, err := c.Result(ctx, string(sub.RequestID))
		if err != nil || len(lifecycle.Outputs(res.Output)) != 1 {
			t.Fatalf("result %+v, %v", res, err)
		}
	}
	st := s.Stats()
	if st.Created != 40 || st.Rejected429 == 0 || st.Errors5xx == 0 || s.Duplicates() != 0 {
		t.Errorf("stats %+v, duplicates %d", st, s.Duplicates())
	}
}

func TestConcurrentLoad(t *testing.T) {
	// Many clients at once: unique ids, one job per input, counters add up.
	s, c := start(t, Config{QueueTime: time.Hour, Seed: 1}, runcomfy.Options{})
	ctx := context.Background()
	const n = 2000
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sub, err := c.Submit(ctx, model, input(i), runcomfy.SubmitOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = string(sub.RequestID)
			if _, err := c.Status(ctx, string(sub.RequestID)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("request id %q handed out twice", id)
		}
		seen[id] = true
	}
	st := s.Stats()
	if st.Created != n || st.Status != n || s.Duplicates() != 0 || len(s.SubmissionsByInput()) != n || len(s.Jobs()) != n {
		t.Errorf("stats %+v, duplicates %d", st, s.Duplicates())
	}
}

func TestSeedMakesIDsReproducible(t *testing.T) {
	ids := func(seed int64) string {
		s := New(Config{Seed: seed})
		var out []string
		for range 3 {
			s.mu.Lock()
			out = append(out, s.newIDLocked())
			s.mu.Unlock()
		}
		return strings.Join(out, ",")
	}
	if ids(1) != ids(1) || ids(1) == ids(2) {
		t.Error("ids do not follow the seed")
	}
}

func TestFilesHost(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8189":   "localhost:8189",
		"localhost:8189":   "127.0.0.1:8189",
		"LOCALHOST:1":      "127.0.0.1:1",
		"[::1]:8189":       "localhost:8189",
		"127.0.0.1":        "localhost",
		"example.com:8189": "example.com:8189",
	} {
		if got := filesHost(in); got != want {
			t.Errorf("filesHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRateLimitAnswers(t *testing.T) {
	for _, share := range []float64{0, 1} {
		s, c := start(t, Config{Rate429: 1, RetryAfterShare: share}, runcomfy.Options{MaxAttempts: 1})
		_, err := c.Status(context.Background(), "x")
		var e *runcomfy.Error
		if !errors.As(err, &e) || e.HTTPStatus != 429 {
			t.Fatalf("err = %v, want a 429", err)
		}
		want := runcomfy.RetryAfterUnset
		if share == 1 {
			want = time.Second
		}
		if e.RetryAfter != want {
			t.Errorf("share %v: RetryAfter %v, want %v", share, e.RetryAfter, want)
		}
		if st := s.Stats(); st.Rejected429 != 1 || st.Status != 1 {
			t.Errorf("stats %+v", st)
		}
	}
}

// BenchmarkHandler drives the handler directly (no sockets) with 10,000
// jobs in flight and more created all the time, to show the cost per
// request does not grow with the number of jobs.
func BenchmarkHandler(b *testing.B) {
	s := New(Config{QueueTime: time.Hour})
	ids := make([]string, 0, b.N)
	call := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	for i := range b.N {
		rec := call("POST", "/v1/models/"+model, fmt.Sprintf(`{"prompt":"p","seed":%d}`, i))
		var sub runcomfy.SubmitResponse
		json.Unmarshal(rec.Body.Bytes(), &sub)
		ids = append(ids, string(sub.RequestID))
		// Poll the 10,000 most recent jobs round-robin.
		window := ids[max(0, len(ids)-10000):]
		if rec := call("GET", "/v1/requests/"+window[i%len(window)]+"/status", ""); rec.Code != 200 {
			b.Fatal(rec.Body.String())
		}
	}
}

func TestUpdate(t *testing.T) {
	s, c := start(t, Config{FailedStatusRate: 1, Rate429: 1}, runcomfy.Options{MaxAttempts: 1})
	ctx := context.Background()
	if _, err := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{}); err == nil {
		t.Fatal("want a 429")
	}
	s.Update(func(cfg *Config) { cfg.Rate429 = 0 })
	failed, err := c.Submit(ctx, model, input(1), runcomfy.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Update(func(cfg *Config) { cfg.FailedStatusRate = 0 })
	ok, _ := c.Submit(ctx, model, input(2), runcomfy.SubmitOptions{})
	if st, _ := c.Status(ctx, string(failed.RequestID)); st.Status != runcomfy.StatusFailed {
		t.Errorf("job created before the update: %q, want it to keep its fate", st.Status)
	}
	if st, _ := c.Status(ctx, string(ok.RequestID)); st.Status != runcomfy.StatusCompleted {
		t.Errorf("job created after the update: %q, want completed", st.Status)
	}
}
