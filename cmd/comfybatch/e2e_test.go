package main

// These tests build the comfybatch binary and run it as a user would, against
// the simulated API served from the test process over a real loopback port,
// so that the fake's counters survive the binary being killed.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
)

const testToken = "tok-SECRET-e2e-4f1d9c"

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "comfybatch-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "comfybatch")
	build := exec.Command("go", "build", "-buildvcs=auto", "-o", binPath, ".") // the commit in --version, where there is one
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building comfybatch:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result of one run of the binary.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func startBinary(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stdout, &stderr
}

func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return -1000
	}
	return 0
}

func runBinary(t *testing.T, env []string, args ...string) result {
	t.Helper()
	start := time.Now()
	cmd, stdout, stderr := startBinary(t, env, args...)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return result{code: exitCodeOf(err), stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("comfybatch %v did not finish in 3 minutes; stderr:\n%s", args, stderr.String())
		return result{}
	}
}

func tokenEnv(apiURL string) []string {
	return []string{"RUNCOMFY_TOKEN=" + testToken, "RUNCOMFY_API_BASE=" + apiURL, "RUNCOMFY_API_TOKEN=", "YOUR_API_TOKEN="}
}

// testJob is one job of a generated manifest, with the input the fake is
// expected to receive.
type testJob struct {
	ID    string
	Input map[string]any
}

const testModel = "wan-ai/wan-2-6/flash/image-to-video"

// writeManifest writes a manifest of n jobs into dir and returns its path.
func writeManifest(t *testing.T, dir string, n int) (string, []testJob) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nmodel: %s\noutput:\n  dir: out\ndefaults:\n  duration: 5\n  resolution: 720P\njobs:\n", testModel)
	jobs := make([]testJob, n)
	for i := range jobs {
		id := fmt.Sprintf("clip-%04d", i)
		prompt := fmt.Sprintf("A paper boat drifts down a rainy gutter, take %d", i)
		fmt.Fprintf(&b, "  - id: %s\n    input:\n      prompt: %q\n      img_url: https://example.com/boat.png\n      seed: %d\n", id, prompt, i)
		jobs[i] = testJob{ID: id, Input: map[string]any{
			"prompt": prompt, "img_url": "https://example.com/boat.png", "seed": i, "duration": 5, "resolution": "720P",
		}}
	}
	path := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, jobs
}

// submissionsPerJob maps each job id to how many times the fake received its
// input.
func submissionsPerJob(t *testing.T, srv *runcomfytest.Server, jobs []testJob) map[string]int {
	t.Helper()
	byInput := srv.SubmissionsByInput()
	out := make(map[string]int, len(jobs))
	for _, j := range jobs {
		in, err := json.Marshal(j.Input)
		if err != nil {
			t.Fatal(err)
		}
		out[j.ID] = byInput[testModel+"\n"+string(in)]
	}
	return out
}

// statusOut is `status -v --json` with the fields the tests read.
type statusOut struct {
	Ledger         string         `json:"ledger"`
	Counts         map[string]int `json:"counts"`
	SpentUSD       float64        `json:"spent_usd"`
	UnreportedCost int            `json:"unreported_cost_submissions"`
	Jobs           []struct {
		ID        string   `json:"id"`
		State     string   `json:"state"`
		RequestID string   `json:"request_id"`
		Attempts  int      `json:"attempts"`
		CostUSD   *float64 `json:"cost_usd"`
		Error     string   `json:"error"`
		Files     []struct {
			Path   string `json:"path"`
			Bytes  int64  `json:"bytes"`
			SHA256 string `json:"sha256"`
		} `json:"files"`
		Events []struct {
			From, To, Detail string
		} `json:"events"`
	} `json:"jobs"`
}

func status(t *testing.T, manifest string) statusOut {
	t.Helper()
	r := runBinary(t, nil, "status", manifest, "-v", "--json")
	if r.code != 0 {
		t.Fatalf("status exited %d: %s", r.code, r.stderr)
	}
	var s statusOut
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return s
}

// checkOutputs verifies every job is done with one file on disk whose sha256
// is that of what the fake served for its request.
func checkOutputs(t *testing.T, dir string, s statusOut, jobs []testJob) {
	t.Helper()
	if s.Counts["done"] != len(jobs) {
		t.Fatalf("done = %d, want %d (counts %v)", s.Counts["done"], len(jobs), s.Counts)
	}
	out := filepath.Join(dir, "out")
	for _, j := range s.Jobs {
		if len(j.Files) != 1 {
			t.Fatalf("job %s: %d files, want 1", j.ID, len(j.Files))
		}
		want := sha256.Sum256(runcomfytest.OutputBytes(j.RequestID, 0))
		data, err := os.ReadFile(filepath.Join(out, j.Files[0].Path))
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(data)
		if got != want || j.Files[0].SHA256 != hex.EncodeToString(want[:]) {
			t.Fatalf("job %s: file %s sha256 %x, ledger says %s, want %x", j.ID, j.Files[0].Path, got, j.Files[0].SHA256, want)
		}
		if j.Files[0].Path != j.ID+".mp4" {
			t.Fatalf("job %s: file named %s", j.ID, j.Files[0].Path)
		}
	}
	meta, err := os.ReadFile(filepath.Join(out, "metadata.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(meta)), "\n")
	if len(lines) != len(jobs) {
		t.Fatalf("metadata.jsonl has %d rows, want %d", len(lines), len(jobs))
	}
	for _, l := range lines {
		var row struct {
			FileName  string         `json:"file_name"`
			ID        string         `json:"id"`
			Model     string         `json:"model"`
			RequestID string         `json:"request_id"`
			Input     map[string]any `json:"input"`
		}
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatalf("metadata row %q: %v", l, err)
		}
		if row.FileName != row.ID+".mp4" || row.Model != testModel || row.RequestID == "" || row.Input["prompt"] == nil {
			t.Fatalf("metadata row incomplete: %s", l)
		}
	}
}

func TestEndToEnd(t *testing.T) {
	srv := runcomfytest.New(runcomfytest.Config{QueueTime: 50 * time.Millisecond, RunTime: 150 * time.Millisecond, Jitter: 0.5, CostUSD: 0.1, Token: testToken, Seed: 1})
	api := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	manifest, jobs := writeManifest(t, dir, 50)

	r := runBinary(t, tokenEnv(api), "run", manifest, "-j", "16", "--rps", "1000")
	if r.code != 0 {
		t.Fatalf("run exited %d:\n%s", r.code, r.stderr)
	}
	t.Logf("50-job run took %v", r.took)
	s := status(t, manifest)
	checkOutputs(t, dir, s, jobs)
	for id, n := range submissionsPerJob(t, srv, jobs) {
		if n != 1 {
			t.Errorf("job %s submitted %d times", id, n)
		}
	}
	if s.SpentUSD < 4.99 || s.SpentUSD > 5.01 {
		t.Errorf("spent = %v, want 5.00 (50 × 0.10)", s.SpentUSD)
	}

	before := srv.Stats().Submits
	r = runBinary(t, tokenEnv(api), "run", manifest, "-j", "16")
	if r.code != 0 {
		t.Fatalf("second run exited %d:\n%s", r.code, r.stderr)
	}
	if after := srv.Stats().Submits; after != before {
		t.Fatalf("second run submitted %d jobs, want none", after-before)
	}

	// The token went nowhere but the API host.
	if n := srv.Stats().FilesWithAuth; n != 0 {
		t.Errorf("%d file downloads carried an Authorization header", n)
	}
	assertNoToken(t, dir, r.stdout+r.stderr)
}

// assertNoToken checks that the token appears in no file under dir (the
// ledger and its WAL, the outputs) and not in the given output.
func assertNoToken(t *testing.T, dir, output string) {
	t.Helper()
	if strings.Contains(output, testToken) {
		t.Errorf("the token was printed")
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(testToken)) {
			t.Errorf("the token is stored in %s", p)
		}
		return nil
	})
}
