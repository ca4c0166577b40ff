package runner

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// bigManifest builds n jobs with distinct inputs, the way a dataset run
// looks: a shared prompt template and a seed per job.
func bigManifest(tb testing.TB, n int) *manifest.Manifest {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "model: %s\ndefaults: {duration: 5, resolution: 720P}\njobs:\n", model)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: j%06d\n    input: {prompt: \"a fox in the snow, take %d\", img_url: \"https://example.com/fox.png\", seed: %d}\n", i, i, i)
	}
	m, err := manifest.Parse("bench.yaml", []byte(b.String()), manifest.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// pooledClient is a client like the command line's: one keep-alive
// connection per worker, no rate limit unless rps says so.
func pooledClient(tb testing.TB, base, token string, conc int, rps float64) *runcomfy.Client {
	tb.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conc + 4
	c, err := runcomfy.New(runcomfy.Options{BaseURL: base, Token: token, RPS: rps,
		HTTPClient: &http.Client{Transport: tr}, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return c
}

// BenchmarkRunZeroLatency is a whole run of 3,000 jobs at -j 64 against the
// simulated API with instant jobs: every job is submitted, polled, fetched,
// downloaded, fsynced and recorded. One op is one run; jobs/s is the figure
// to read. "durable" is the ledger as shipped, "nosync" the same with the
// ledger's fsync off, to show what durability costs (output files are
// fsynced in both).
//
// Every run writes into its own folder under one that is removed only at the
// end: ext4 scans past inodes freed in the last minutes when it allocates
// new ones, so deleting one run's 3,000 files before the next starts would
// make the next measure the file system's bookkeeping rather than the runner.
func BenchmarkRunZeroLatency(b *testing.B) {
	const jobs, conc = 3000, 64
	m := bigManifest(b, jobs)
	root := b.TempDir()
	for _, c := range []struct {
		name string
		opts store.Options
	}{{"durable", store.Options{}}, {"nosync", store.Options{NoSync: true}}} {
		b.Run(c.name, func(b *testing.B) {
			var total time.Duration
			var ws store.WriterStats
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				srv := runcomfytest.New(runcomfytest.Config{Token: "bench-token-t"})
				base := srv.Start()
				client := pooledClient(b, base, "bench-token-t", conc, 0)
				dir := filepath.Join(root, fmt.Sprintf("%s-%d-%d", c.name, b.N, i))
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				st, err := store.Open(filepath.Join(dir, "ledger.db"), c.opts)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				sum, err := Run(context.Background(), context.Background(), Config{Manifest: m, Store: st, API: client, HTTP: client.HTTPClient(),
					OutDir: filepath.Join(dir, "out"), Concurrency: conc, ProgressEvery: -1})
				total += time.Since(start)
				b.StopTimer()
				if err != nil || sum.Counts[lifecycle.Done] != jobs {
					b.Fatalf("run: %v %v", err, sum.Counts)
				}
				w := st.WriterStats()
				ws.Writes += w.Writes
				ws.Commits += w.Commits
				st.Close()
				srv.Close()
			}
			b.ReportMetric(float64(jobs*b.N)/total.Seconds(), "jobs/s")
			b.ReportMetric(float64(ws.Writes)/float64(jobs*b.N), "writes/job")
			b.ReportMetric(float64(ws.Writes)/float64(ws.Commits), "writes/commit")
		})
	}
}
