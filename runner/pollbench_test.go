package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// pollMeter sits in front of the simulated API and measures polling from
// the server's side: status and result calls per request, and how long after
// a job's end the client first heard of it (the detection lag).
type pollMeter struct {
	api http.Handler

	mu       sync.Mutex
	calls    int                  // status and result calls
	perJob   map[string]int       // request id -> its status and result calls
	order    []string             // request ids in the order of their first poll
	detected map[string]time.Time // request id -> first answer that said it ended
	finished map[string]time.Time // request id -> finished_at, from a result answer
}

func newPollMeter(api http.Handler) *pollMeter {
	return &pollMeter{api: api, perJob: map[string]int{}, detected: map[string]time.Time{}, finished: map[string]time.Time{}}
}

// recorder keeps a copy of the body for the meter to read.
type recorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (m *pollMeter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	poll := r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/requests/") &&
		(strings.HasSuffix(r.URL.Path, "/status") || strings.HasSuffix(r.URL.Path, "/result"))
	if !poll {
		m.api.ServeHTTP(w, r)
		return
	}
	rec := &recorder{ResponseWriter: w}
	m.api.ServeHTTP(rec, r)
	now := time.Now()
	var ans struct {
		RequestID  string `json:"request_id"`
		Status     string `json:"status"`
		FinishedAt string `json:"finished_at"`
	}
	json.Unmarshal(rec.body.Bytes(), &ans)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	id := strings.Split(r.URL.Path, "/")[3] // /v1/requests/{id}/...
	if m.perJob[id] == 0 {
		m.order = append(m.order, id)
	}
	m.perJob[id]++
	if !runcomfy.Terminal(ans.Status) || ans.RequestID == "" {
		return
	}
	if _, ok := m.detected[ans.RequestID]; !ok {
		m.detected[ans.RequestID] = now
	}
	if t, err := time.Parse(time.RFC3339Nano, ans.FinishedAt); err == nil {
		m.finished[ans.RequestID] = t
	}
}

// report returns calls per job, the same without the first warm jobs to be
// polled, and the median and 90th percentile lag.
func (m *pollMeter) report(tb testing.TB, jobs, warm int) (callsPerJob, warmCallsPerJob float64, p50, p90 time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var lags []time.Duration
	for id, at := range m.detected {
		end, ok := m.finished[id]
		if !ok {
			tb.Fatalf("request %s: no result fetched", id)
		}
		lags = append(lags, at.Sub(end))
	}
	if len(lags) != jobs {
		tb.Fatalf("%d jobs seen to end, want %d", len(lags), jobs)
	}
	slices.Sort(lags)
	// The first jobs of a run are polled before it has seen any finish:
	// report the rest apart, which is what a long run costs per job.
	warmCalls := 0
	for _, id := range m.order[warm:] {
		warmCalls += m.perJob[id]
	}
	return float64(m.calls) / float64(jobs), float64(warmCalls) / float64(jobs-warm), lags[len(lags)/2], lags[len(lags)*9/10]
}

// BenchmarkPolling compares the adaptive poller of runner.Run with a fixed
// poller that asks for the status every 2 s and fetches the result once at
// the end, on the same simulated API with jobs of 2–4 s (3 s ± 1/3), with
// the same number of jobs in hand. It reports status+result calls per job
// and the median and 90th percentile completion-detection lag. The adaptive
// poller learns from the jobs it sees finish, so the first -j jobs of a run
// cost it more: calls/job-after-first-N leaves them out, and is what each job
// of a long run costs.
func BenchmarkPolling(b *testing.B) {
	const jobs, conc = 1200, 60
	cfg := runcomfytest.Config{RunTime: 3 * time.Second, Jitter: 1.0 / 3, Token: "bench-token-t"}
	m := bigManifest(b, jobs)

	b.Run("adaptive", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			meter := newPollMeter(runcomfytest.New(cfg))
			ts := httptest.NewServer(meter)
			client := pooledClient(b, ts.URL, "bench-token-t", conc, 0)
			dir := b.TempDir()
			st, err := store.Open(filepath.Join(dir, "ledger.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			sum, err := Run(context.Background(), context.Background(), Config{Manifest: m, Store: st, API: client, HTTP: client.HTTPClient(),
				OutDir: filepath.Join(dir, "out"), Concurrency: conc, ProgressEvery: -1})
			st.Close()
			ts.Close()
			if err != nil || sum.Counts[lifecycle.Done] != jobs {
				b.Fatalf("run: %v %v", err, sum.Counts)
			}
			reportPolling(b, meter, jobs, conc)
		}
	})

	b.Run("fixed-2s", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			meter := newPollMeter(runcomfytest.New(cfg))
			ts := httptest.NewServer(meter)
			client := pooledClient(b, ts.URL, "bench-token-t", conc, 0)
			work := make(chan json.RawMessage)
			var wg sync.WaitGroup
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for in := range work {
						if err := fixedPoll(client, in); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for _, j := range m.Jobs {
				work <- j.Input
			}
			close(work)
			wg.Wait()
			ts.Close()
			reportPolling(b, meter, jobs, conc)
		}
	})
}

// fixedPoll is the baseline: submit, then a status call every 2 s until the
// job ends, then one result call.
func fixedPoll(c *runcomfy.Client, input json.RawMessage) error {
	ctx := context.Background()
	sub, err := c.Submit(ctx, model, input, runcomfy.SubmitOptions{})
	if err != nil {
		return err
	}
	for {
		time.Sleep(2 * time.Second)
		st, err := c.Status(ctx, string(sub.RequestID))
		if err != nil {
			return err
		}
		if runcomfy.Terminal(st.Status) {
			_, err := c.Result(ctx, string(sub.RequestID))
			return err
		}
	}
}

func reportPolling(b *testing.B, m *pollMeter, jobs, conc int) {
	calls, warm, p50, p90 := m.report(b, jobs, conc)
	b.ReportMetric(calls, "calls/job")
	b.ReportMetric(warm, "calls/job-after-first-"+strconv.Itoa(conc))
	b.ReportMetric(float64(p50.Milliseconds()), "lag-p50-ms")
	b.ReportMetric(float64(p90.Milliseconds()), "lag-p90-ms")
}

// The cost of planning a model's aims, and of what each poll asks of its
// model, at -j 1000: a full window of jobs of 0.2–0.8 s and 1,000 jobs
// alive. (Measured: planLevels about 0.6 ms, every replanEvery finished
// jobs; get about 0.2 ms, most of it the Kaplan–Meier sort of 1,128 ages.)
//
//	go test -run XXX -bench 'PlanLevels|DurationsGet' ./runner/
func BenchmarkPlanLevels(b *testing.B) {
	d := benchDurations(1000)
	ends, _ := survival(d.window[:], slices.Collect(maps.Values(d.alive)))
	b.ResetTimer()
	for range b.N {
		planLevels(ends)
	}
}

func BenchmarkDurationsGet(b *testing.B) {
	d := benchDurations(1000)
	d.get()
	b.ResetTimer()
	for range b.N {
		d.get()
	}
}

func benchDurations(alive int) *durations {
	var d durations
	rng := rand.New(rand.NewPCG(1, 2))
	for range len(d.window) {
		d.add(200*time.Millisecond + time.Duration(rng.Int64N(int64(600*time.Millisecond))))
	}
	for i := range alive {
		d.seen(fmt.Sprint("job-", i), time.Duration(rng.Int64N(int64(500*time.Millisecond))))
	}
	return &d
}
