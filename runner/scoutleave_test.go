package runner

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// A scout that ends without teaching anything (failed, cancelled, gone
// missing) frees its place; the jobs waiting on the scouts must hear of it,
// or a model whose scouts all fail has no scout until --poll-max passes.
func TestAScoutLeavingWakesTheOthers(t *testing.T) {
	var d durations
	for i := range scouts {
		if !d.scout(fmt.Sprintf("scout-%d", i)) {
			t.Fatalf("scout-%d refused a free place", i)
		}
	}
	if d.scout("waiting") {
		t.Fatal("a ninth job took a scout's place")
	}
	news := d.newsOf()
	d.gone("scout-0")
	select {
	case <-news.Done():
	default:
		t.Fatal("a scout left without a word: the jobs waiting on scouts sleep until --poll-max")
	}
	if !d.scout("waiting") {
		t.Fatal("the freed scout place was not taken")
	}
	// A job that never scouted leaving says nothing new.
	news = d.newsOf()
	d.gone("never-scouted")
	select {
	case <-news.Done():
		t.Fatal("a job that was not a scout woke the others")
	default:
	}
}

// End to end: every job of the model fails, so none ever teaches a
// duration. With --poll-max an hour, the jobs beyond the first scouts must
// still be polled soon after the scouts end, not an hour later (the context
// deadline stands for the hour).
func TestScoutsThatAllFailHandOverTheirPlaces(t *testing.T) {
	const jobs = 24
	fake := runcomfytest.New(runcomfytest.Config{RunTime: 200 * time.Millisecond, FailureRate: 1, Token: "scout-token"})
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	e := envBehind(t, fake, ts.URL, "scout-token")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sum, err := Run(ctx, ctx, Config{Manifest: manifestOf(t, jobs, "failing"), Store: st, API: e.client, HTTP: e.client.HTTPClient(),
		OutDir: filepath.Join(e.dir, "out"), Concurrency: jobs, PollMax: time.Hour, ProgressEvery: -1})
	if sum.Counts[lifecycle.Failed] != jobs {
		t.Fatalf("run: %v, %v; want %d failed (the jobs past the scouts were left waiting on scouts that had ended)", err, sum.Counts, jobs)
	}
}
