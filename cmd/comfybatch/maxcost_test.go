package main

import (
	"strings"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
)

// TestMaxCostAcrossRuns runs the binary twice under --max-cost against one
// simulated API: the first run stops submitting at the cap and exits 1 with
// the rest pending; the second counts the first one's spend from the
// ledger, so raising the cap by $0.50 lets exactly two more $0.25 jobs go.
func TestMaxCostAcrossRuns(t *testing.T) {
	t.Parallel()
	srv := runcomfytest.New(runcomfytest.Config{QueueTime: 20 * time.Millisecond, RunTime: 50 * time.Millisecond, CostUSD: 0.25, Token: testToken})
	api := srv.Start()
	defer srv.Close()
	manifest, _ := writeManifest(t, t.TempDir(), 10) // duration 5 at $0.05 a second: $0.25 each

	r := runBinary(t, tokenEnv(api), "run", manifest, "--max-cost", "1", "--rps", "1000")
	if r.code != 1 {
		t.Fatalf("first run exited %d, want 1:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"--max-cost reached", "6 pending, held back by --max-cost ($1.00 spent or in flight; the next job would add $0.25)", "raise --max-cost"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("first run does not say %q:\n%s", want, r.stderr)
		}
	}
	if got := srv.Stats().Created; got != 4 {
		t.Fatalf("first run created %d jobs, want 4 ($1.00 / $0.25)", got)
	}
	s := status(t, manifest)
	if s.Counts["done"] != 4 || s.Counts["pending"] != 6 || s.SpentUSD != 1 {
		t.Fatalf("after the first run: %+v", s.Counts)
	}

	r = runBinary(t, tokenEnv(api), "run", manifest, "--max-cost", "1.5", "--rps", "1000")
	if r.code != 1 || !strings.Contains(r.stderr, "4 pending") {
		t.Fatalf("second run exited %d, want 1 with 4 pending:\n%s", r.code, r.stderr)
	}
	if got := srv.Stats().Created; got != 6 {
		t.Fatalf("after the second run the fake created %d jobs, want 6: the $1.00 already spent counts", got)
	}
	if d := srv.Duplicates(); d != 0 {
		t.Fatalf("%d duplicate submissions", d)
	}

	// Without a cap the rest goes through, and exit 0.
	if r := runBinary(t, tokenEnv(api), "run", manifest, "--rps", "1000"); r.code != 0 {
		t.Fatalf("uncapped run exited %d:\n%s", r.code, r.stderr)
	}
	// Exactly the 4 pending jobs went: 10 in all across the three runs,
	// none of them twice.
	if got := srv.Stats().Created; got != 10 {
		t.Fatalf("after the uncapped run the fake created %d jobs in all, want 10", got)
	}
	if d := srv.Duplicates(); d != 0 {
		t.Fatalf("%d duplicate submissions across the runs", d)
	}
	s = status(t, manifest)
	total := 0
	for _, n := range s.Counts {
		total += n
	}
	if s.Counts["done"] != 10 || total != 10 || s.SpentUSD != 2.5 {
		t.Fatalf("after the uncapped run: counts %v, spent %v; want 10 done and $2.50", s.Counts, s.SpentUSD)
	}
}

// TestMaxCostUsage: a cap that is not a number of dollars, or that cannot
// be enforced, is a usage error (exit 2) and nothing is submitted.
func TestMaxCostUsage(t *testing.T) {
	t.Parallel()
	srv, env := fakeAPI(t, runcomfytest.Config{})
	manifest, _ := writeManifest(t, t.TempDir(), 2)
	for _, bad := range []string{"-1", "NaN", "lots"} {
		if r := runMain(t, env, "run", manifest, "--max-cost", bad); r.code != 2 {
			t.Errorf("--max-cost %s: exit %d, want 2:\n%s", bad, r.code, r.stderr)
		}
	}
	// A price unit comfybatch cannot estimate: the cap cannot hold.
	srv.Update(func(c *runcomfytest.Config) { c.PriceUnit = "megapixel" })
	r := runMain(t, env, "run", manifest, "--max-cost", "5")
	if r.code != 2 || !strings.Contains(r.stderr, "--max-cost cannot be enforced") || !strings.Contains(r.stderr, "megapixel") {
		t.Fatalf("exit %d, want 2 explaining why:\n%s", r.code, r.stderr)
	}
	if srv.Stats().Submits != 0 {
		t.Fatal("submitted under a cap it could not enforce")
	}
}
