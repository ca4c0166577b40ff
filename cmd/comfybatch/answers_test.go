package main

// End-to-end tests, through the built binary, of each class of answer that
// RunComfy's own clients know (see lifecycle's table tests for the sources):
// the simulated API is given the matching Answers and the binary must keep
// the promise — no job paid twice, no request id lost, nothing recorded done
// without proof, no token echoed anywhere.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
)

// hostile serves the simulated API with cfg in the test process and writes
// an n-job manifest into a fresh folder.
func hostile(t *testing.T, cfg runcomfytest.Config, n int) (*runcomfytest.Server, []string, string, []testJob) {
	t.Helper()
	if err := cfg.Answers.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, env := serveFake(t, cfg)
	manifest, jobs := writeManifest(t, t.TempDir(), n)
	return srv, env, manifest, jobs
}

// serveFake serves the simulated API with cfg (and the test token) on a
// loopback port until the test ends, and gives the environment that points
// the binary at it.
func serveFake(t *testing.T, cfg runcomfytest.Config) (*runcomfytest.Server, []string) {
	t.Helper()
	cfg.Token = testToken
	srv := runcomfytest.New(cfg)
	url := srv.Start()
	t.Cleanup(srv.Close)
	return srv, tokenEnv(url)
}

// Class 1: submit answers. An answer that may follow the job's creation
// leaves it unknown, created once, never submitted again by a plain rerun;
// an id in any scalar is kept; the account's refusals stop the run with
// every job pending.
func TestAnswersSubmit(t *testing.T) {
	unknown := []struct {
		name string
		a    runcomfytest.Answers
	}{
		{"503 after creation", runcomfytest.Answers{SubmitCreated5xx: 1}},
		{"2xx with error_code 500001", runcomfytest.Answers{SubmitCreatedErrorCode: 1}},
		{"2xx {} and []", runcomfytest.Answers{SubmitEmptyBody: 1}},
	}
	for _, tt := range unknown {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, env, manifest, jobs := hostile(t, runcomfytest.Config{Answers: tt.a}, 3)
			r := runBinary(t, env, "run", manifest, "--poll-max", "50ms")
			if r.code != 1 || !strings.Contains(r.stderr, "3 unknown") {
				t.Fatalf("exit %d, want 1 with 3 unknown:\n%s", r.code, r.stderr)
			}
			again := runBinary(t, env, "run", manifest, "--poll-max", "50ms")
			if again.code != 1 {
				t.Fatalf("rerun exit %d:\n%s", again.code, again.stderr)
			}
			st := srv.Stats()
			if st.Submits != 3 || st.Created != 3 || srv.Duplicates() != 0 {
				t.Fatalf("%d POSTs, %d created, %d duplicates; want each job POSTed once", st.Submits, st.Created, srv.Duplicates())
			}
			for id, n := range submissionsPerJob(t, srv, jobs) {
				if n != 1 {
					t.Fatalf("job %s created %d times", id, n)
				}
			}
			if s := status(t, manifest); s.Counts["unknown"] != 3 {
				t.Fatalf("counts %v, want 3 unknown", s.Counts)
			}
		})
	}
	t.Run("numeric request id", func(t *testing.T) {
		t.Parallel()
		srv, env, manifest, _ := hostile(t, runcomfytest.Config{Answers: runcomfytest.Answers{NumericRequestIDs: true}}, 2)
		if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms"); r.code != 0 {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
		s := status(t, manifest)
		for _, j := range s.Jobs {
			if j.State != "done" || strings.Trim(j.RequestID, "0123456789") != "" || j.RequestID == "" {
				t.Fatalf("job %s: %s with request id %q", j.ID, j.State, j.RequestID)
			}
		}
		if srv.Stats().Created != 2 {
			t.Fatalf("created %d", srv.Stats().Created)
		}
	})
	for _, code := range []int{401, 402, 403} {
		t.Run(fmt.Sprint("refused ", code), func(t *testing.T) {
			t.Parallel()
			srv, env, manifest, _ := hostile(t, runcomfytest.Config{Answers: runcomfytest.Answers{SubmitRefuse: code}}, 3)
			r := runBinary(t, env, "run", manifest, "-j", "1")
			if r.code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", r.code, r.stderr)
			}
			if st := srv.Stats(); st.Submits != 1 || st.Created != 0 {
				t.Fatalf("%d POSTs, %d created; want the first refusal to stop the run", st.Submits, st.Created)
			}
			if s := status(t, manifest); s.Counts["pending"] != 3 {
				t.Fatalf("counts %v, want every job pending", s.Counts)
			}
		})
	}
}

// Class 2: a job is committed as submitting only when its POST leaves, so
// a kill while jobs wait on --rps leaves them pending, never unknown.
func TestAnswersKillWhileWaitingOnRate(t *testing.T) {
	srv, env, manifest, _ := hostile(t, runcomfytest.Config{QueueTime: time.Minute}, 4)
	cmd, _, stderr := startBinary(t, env, "run", manifest, "--rps", "0.25", "-j", "4")
	deadline := time.Now().Add(20 * time.Second)
	for srv.Stats().Created < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // the first id is saved; the others wait on the limiter
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if srv.Stats().Created != 1 {
		t.Fatalf("created %d before the kill, want 1; stderr:\n%s", srv.Stats().Created, stderr)
	}
	s := status(t, manifest)
	if s.Counts["submitting"] != 0 || s.Counts["unknown"] != 0 || s.Counts["pending"] != 3 || s.Counts["queued"] != 1 {
		t.Fatalf("counts %v: want 1 queued and 3 pending, none submitting or unknown", s.Counts)
	}
}

// Class 3: poll answers in every casing and spelling, a status nobody
// documented, and 404001 for a while after the submission.
func TestAnswersPoll(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  runcomfytest.Config
	}{
		{"upper case", runcomfytest.Config{QueueTime: 100 * time.Millisecond, Answers: runcomfytest.Answers{StatusCase: "upper"}}},
		{"title case", runcomfytest.Config{QueueTime: 100 * time.Millisecond, Answers: runcomfytest.Answers{StatusCase: "title"}}},
		{"succeeded", runcomfytest.Config{Answers: runcomfytest.Answers{Succeeded: true, StatusCase: "upper"}}},
		{"unknown status", runcomfytest.Config{RunTime: 400 * time.Millisecond, Answers: runcomfytest.Answers{UnknownStatus: "warming_up"}}},
		{"404001 right after submit", runcomfytest.Config{Answers: runcomfytest.Answers{NotFoundFor: 1500 * time.Millisecond}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, env, manifest, jobs := hostile(t, tt.cfg, 3)
			r := runBinary(t, env, "run", manifest, "--poll-max", "100ms")
			if r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			checkOutputs(t, filepath.Dir(manifest), status(t, manifest), jobs)
			if srv.Stats().Created != 3 {
				t.Fatalf("created %d", srv.Stats().Created)
			}
		})
	}
	t.Run("failed upper case", func(t *testing.T) {
		t.Parallel()
		_, env, manifest, _ := hostile(t, runcomfytest.Config{FailedStatusRate: 1, Answers: runcomfytest.Answers{StatusCase: "upper"}}, 2)
		if r := runBinary(t, env, "run", manifest, "--poll-max", "100ms"); r.code != 1 {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
		if s := status(t, manifest); s.Counts["failed"] != 2 {
			t.Fatalf("counts %v", s.Counts)
		}
	})
}

// Class 4: every kind of output is saved as a file with exactly the bytes
// RunComfy's answer stands for; a completed job is never failed for want of
// a URL.
func TestAnswersOutputs(t *testing.T) {
	for _, tt := range []struct {
		kind    string
		outputs int
	}{
		{"videos", 2}, {"image", 1}, {"images", 2}, {"audio", 1}, {"audios", 2}, {"nested", 2}, {"data", 1}, {"text", 1},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			t.Parallel()
			cfg := runcomfytest.Config{OutputsPerJob: tt.outputs, Answers: runcomfytest.Answers{OutputKind: tt.kind}}
			_, env, manifest, _ := hostile(t, cfg, 2)
			if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms"); r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			cfg.Token = testToken
			s := status(t, manifest)
			for _, j := range s.Jobs {
				want := tt.outputs
				if tt.kind == "text" {
					want = 1
				}
				if j.State != "done" || len(j.Files) != want {
					t.Fatalf("job %s: %s with %d files, want done with %d", j.ID, j.State, len(j.Files), want)
				}
				for n, f := range j.Files {
					data, err := os.ReadFile(filepath.Join(filepath.Dir(manifest), "out", f.Path))
					if err != nil {
						t.Fatal(err)
					}
					exp := runcomfytest.ExpectedOutput(cfg, j.RequestID, n)
					sum := sha256.Sum256(data)
					if !bytes.Equal(data, exp) || f.SHA256 != hex.EncodeToString(sum[:]) {
						t.Fatalf("job %s output %d (%s): %d bytes, want the %d bytes the answer stands for", j.ID, n, f.Path, len(data), len(exp))
					}
				}
			}
		})
	}
}

// Class 5: money. A cost as a numeric string counts; a missing one is
// unknown, not $0; a negative or unreadable one is ignored with a warning;
// a budget never trusts a $0 price.
func TestAnswersMoney(t *testing.T) {
	t.Run("cost as a string", func(t *testing.T) {
		t.Parallel()
		_, env, manifest, _ := hostile(t, runcomfytest.Config{CostUSD: 0.25, Answers: runcomfytest.Answers{CostAs: "string"}}, 3)
		if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms"); r.code != 0 {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
		if s := status(t, manifest); s.SpentUSD != 0.75 || s.UnreportedCost != 0 {
			t.Fatalf("spent %v, unreported %d; want 0.75, 0", s.SpentUSD, s.UnreportedCost)
		}
	})
	for _, how := range []string{"missing", "negative", "garbage"} {
		t.Run("cost "+how, func(t *testing.T) {
			t.Parallel()
			_, env, manifest, _ := hostile(t, runcomfytest.Config{CostUSD: 0.25, Answers: runcomfytest.Answers{CostAs: how}}, 2)
			r := runBinary(t, env, "run", manifest, "--poll-max", "50ms")
			if r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			if how != "missing" && !strings.Contains(r.stderr, "ignored") {
				t.Fatalf("no warning about the %s cost:\n%s", how, r.stderr)
			}
			s := status(t, manifest)
			if s.SpentUSD != 0 || s.UnreportedCost != 2 {
				t.Fatalf("spent %v, unreported %d; want 0 and 2 unknown", s.SpentUSD, s.UnreportedCost)
			}
			for _, j := range s.Jobs {
				if j.CostUSD != nil {
					t.Fatalf("job %s cost %v, want unknown", j.ID, *j.CostUSD)
				}
			}
			text := runBinary(t, nil, "status", manifest, "-v")
			if !strings.Contains(text.stdout, "+ unknown") || !strings.Contains(text.stdout, "cost unknown") {
				t.Fatalf("status does not say the cost is unknown:\n%s", text.stdout)
			}
		})
	}
	t.Run("price as a string", func(t *testing.T) {
		t.Parallel()
		srv, env, manifest, _ := hostile(t, runcomfytest.Config{PriceUSD: 0.05, Answers: runcomfytest.Answers{PriceAs: "string"}}, 4)
		// 4 jobs of 5 s at $0.05/s: $1.00; a $0.50 cap lets two through.
		r := runBinary(t, env, "run", manifest, "--max-cost", "0.5", "--poll-max", "50ms")
		if r.code != 1 || srv.Stats().Created != 2 {
			t.Fatalf("exit %d, created %d; want 1 and 2:\n%s", r.code, srv.Stats().Created, r.stderr)
		}
	})
	t.Run("zero price refuses a cap", func(t *testing.T) {
		t.Parallel()
		srv, env, manifest, _ := hostile(t, runcomfytest.Config{Answers: runcomfytest.Answers{PriceAs: "zero"}}, 2)
		r := runBinary(t, env, "run", manifest, "--max-cost", "10")
		if r.code != 2 || srv.Stats().Submits != 0 || !strings.Contains(r.stderr, "--max-cost cannot be enforced") {
			t.Fatalf("exit %d, %d POSTs; want 2 and none:\n%s", r.code, srv.Stats().Submits, r.stderr)
		}
	})
}

// Class 6: cancel answers in every shape are settled from the status.
func TestAnswersCancel(t *testing.T) {
	for _, tt := range []struct {
		shape, outcome, state string
	}{
		{"status-only", "cancelled", "cancelled"},
		{"requested", "cancelled", "cancelled"}, // {"status":"cancelled","outcome":"cancellation_requested"}
		{"canceled", "cancelled", "cancelled"},
		{"empty", "requested", "queued"}, // {}: nothing confirmed; the next run polls it
	} {
		t.Run(tt.shape, func(t *testing.T) {
			t.Parallel()
			_, env, manifest, _ := hostile(t, runcomfytest.Config{QueueTime: time.Minute, Answers: runcomfytest.Answers{CancelShape: tt.shape}}, 2)
			if r := runBinary(t, env, "run", manifest, "--submit-only"); r.code != 0 {
				t.Fatalf("submit-only exit %d:\n%s", r.code, r.stderr)
			}
			r := runBinary(t, env, "cancel", manifest, "--json")
			var out cancelJSON
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("cancel --json: %v\n%s\n%s", err, r.stdout, r.stderr)
			}
			for _, j := range out.Jobs {
				if j.Outcome != tt.outcome || j.State != tt.state {
					t.Fatalf("job %s: outcome %s state %s, want %s %s (%s)", j.ID, j.Outcome, j.State, tt.outcome, tt.state, j.Detail)
				}
			}
			if s := status(t, manifest); s.Counts[tt.state] != 2 {
				t.Fatalf("counts %v", s.Counts)
			}
		})
	}
}

// Class 7: a 422's detail reaches the job's error field by field, and a
// server that echoes the token never gets it into the ledger, the log,
// status or results.
func TestAnswersMessages(t *testing.T) {
	_, env, manifest, _ := hostile(t, runcomfytest.Config{Answers: runcomfytest.Answers{SubmitRefuse: 422, EchoToken: true}}, 2)
	r := runBinary(t, env, "run", manifest)
	if r.code != 1 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	s := status(t, manifest)
	for _, j := range s.Jobs {
		if j.State != "failed" || !strings.Contains(j.Error, "prompt: field required") || !strings.Contains(j.Error, "seed: ensure this value") {
			t.Fatalf("job %s: %s, error %q", j.ID, j.State, j.Error)
		}
	}
	st := runBinary(t, nil, "status", manifest, "-v")
	res := runBinary(t, nil, "results", manifest)
	assertNoToken(t, filepath.Dir(manifest), r.stderr+r.stdout+st.stdout+res.stdout)

	// Echoed in poll errors and results too.
	_, env, manifest, _ = hostile(t, runcomfytest.Config{Rate5xx: 0.3, FailedStatusRate: 1, Answers: runcomfytest.Answers{EchoToken: true}, Seed: 3}, 4)
	r = runBinary(t, env, "run", manifest, "--poll-max", "50ms", "-v")
	st = runBinary(t, nil, "status", manifest, "-v", "--json")
	res = runBinary(t, nil, "results", manifest, "--format", "csv")
	assertNoToken(t, filepath.Dir(manifest), r.stderr+r.stdout+st.stdout+res.stdout)
}
