package runner

import (
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy/runcomfytest"
)

// A resumed run hands each job in flight to one worker. The jobs are listed
// by state, and a worker polling a queued job moves it to running: listed
// state by state as the workers went, the running ones were listed again
// and collected twice, two downloads of one job at once (found by the model
// test: "job → done: is done", a ledger error that ended the run).
func TestResumedJobsAreCollectedOnce(t *testing.T) {
	// The account runs 4 at once: the others wait in its queue, so the
	// resumed run sees jobs go from queued to running as it collects.
	const jobs = 40
	e := newEnv(t, runcomfytest.Config{RunTime: 100 * time.Millisecond, MaxRunning: 4})
	m := manifestOf(t, jobs, "resume-once")
	if _, err := e.run(m, func(c *Config) { c.SubmitOnly = true; c.Concurrency = jobs }); err != nil {
		t.Fatal(err)
	}
	sum, err := e.run(m, func(c *Config) { c.Concurrency = 4 })
	if err != nil || sum.Counts[lifecycle.Done] != jobs {
		t.Fatalf("resumed run: %v %v", err, sum.Counts)
	}
	if got := e.srv.Stats().Files; got != jobs {
		t.Fatalf("%d file downloads for %d jobs of one file each", got, jobs)
	}
	if got := e.srv.Stats().Created; got != jobs {
		t.Fatalf("%d created", got)
	}
}
