package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"comfybatch/manifest"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// planDir holds the plan manifest and goldens; tests copy the manifest into
// a temp dir and run there, so that paths in the output are relative.
const planDir = "../../testdata/plan"

// planFixture copies testdata/plan/jobs.yaml into a temp dir, makes it the
// working directory, and returns the absolute path of the goldens' folder.
func planFixture(t *testing.T) string {
	t.Helper()
	goldens, err := filepath.Abs(planDir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(goldens, "jobs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if err := os.WriteFile("jobs.yaml", data, 0o644); err != nil {
		t.Fatal(err)
	}
	return goldens
}

// buildLedger records each job of jobs.yaml in the state its id names, the
// two "changed-" ones under an older fingerprint, plus a job that is no
// longer in the manifest and still running.
func buildLedger(t *testing.T) {
	t.Helper()
	s, err := runcomfy.BuiltinSchemas()
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Load("jobs.yaml", manifest.Options{FieldType: s.FieldType})
	if err != nil {
		t.Fatal(err)
	}
	// Built an hour ago: past lifecycle.MissingGrace, so the fake's "not
	// found" for these made-up request ids is believed at once.
	hourAgo := func() time.Time { return time.Now().Add(-time.Hour) }
	st, err := store.Open("jobs.ledger.db", store.Options{Now: hourAgo})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var specs []store.Spec
	for _, j := range m.Jobs {
		if j.ID == "new-long" || j.ID == "new-nodur" {
			continue
		}
		in, _ := json.Marshal(j.Input)
		fp := j.Fingerprint()
		if j.ID == "changed-done" || j.ID == "changed-queued" {
			fp = "0000older"
		}
		specs = append(specs, store.Spec{ID: j.ID, Model: j.Model, Input: in, Fingerprint: fp})
	}
	specs = append(specs, store.Spec{ID: "removed", Model: m.Jobs[0].Model, Input: json.RawMessage(`{}`), Fingerprint: "ffff"})
	if _, err := st.Sync(context.Background(), specs); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	submit := func(id string) {
		t.Helper()
		_, err := beginSubmit(st, id)
		must(err)
		must(submitted(st, id, "req-"+id))
	}
	cost := 0.25
	for _, id := range []string{"changed-done", "changed-queued", "queued", "completed", "done", "failed", "cancelled", "removed"} {
		submit(id)
	}
	for _, id := range []string{"changed-done", "completed", "done"} {
		must(completed(st, id, "completed", []string{"http://127.0.0.1:1/" + id + ".mp4"}, &cost))
	}
	for _, id := range []string{"changed-done", "done"} {
		must(markDone(st, id))
	}
	must(failed(st, "failed", "failed", "the model refused the image", &cost))
	must(cancelled(st, "cancelled", "cancelled", "cancelled by the user"))
	_, err = beginSubmit(st, "unknown")
	must(err)
	_, err = st.Recover(context.Background())
	must(err)
	_, err = beginSubmit(st, "submitting")
	must(err)
}

func fakeAPI(t *testing.T, cfg runcomfytest.Config) (*runcomfytest.Server, map[string]string) {
	t.Helper()
	cfg.Token = testToken
	srv := runcomfytest.New(cfg)
	base := srv.Start()
	t.Cleanup(srv.Close)
	return srv, map[string]string{"RUNCOMFY_API_BASE": base, "RUNCOMFY_TOKEN": testToken}
}

// TestPlanGolden pins plan's text and JSON output for a fresh manifest and
// for a ledger holding every state, with and without a price.
func TestPlanGolden(t *testing.T) {
	cases := []struct {
		name   string
		ledger bool
		cfg    runcomfytest.Config
		noAPI  bool // no token and no --fake: the price is unknown
		args   []string
	}{
		{name: "fresh.txt"},
		{name: "fresh_no_token.txt", noAPI: true},
		{name: "fresh_fake.txt", noAPI: true, args: []string{"--fake"}},
		{name: "fresh_per_output.txt", cfg: runcomfytest.Config{PriceUSD: 0.3, PriceUnit: "output"}},
		{name: "fresh_unknown_unit.txt", cfg: runcomfytest.Config{PriceUSD: 0.01, PriceUnit: "token"}},
		{name: "ledger.txt", ledger: true, args: []string{"-v"}},
		{name: "ledger.json", ledger: true, args: []string{"-v", "--json"}},
		{name: "ledger_no_token.json", ledger: true, noAPI: true, args: []string{"--json"}},
		{name: "ledger_flags.txt", ledger: true, args: []string{"--retry-failed", "--resubmit-unknown"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			goldens := planFixture(t)
			srv, env := fakeAPI(t, c.cfg)
			if c.noAPI {
				env = nil
			}
			if c.ledger {
				buildLedger(t)
			}
			before := ledgerState(t)
			r := runMain(t, env, append([]string{"plan", "jobs.yaml"}, c.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			checkGolden(t, filepath.Join(goldens, c.name), r.stdout)
			if after := ledgerState(t); after != before {
				t.Errorf("plan changed the ledger: %q → %q", before, after)
			}
			st := srv.Stats()
			if st.Submits+st.Status+st.Result+st.Cancel != 0 {
				t.Errorf("plan made calls other than the price: %+v", st)
			}
			if want := int64(1); !c.noAPI && st.Model != want {
				t.Errorf("%d model calls, want one per model (%d)", st.Model, want)
			}
		})
	}
}

// ledgerState is whether a ledger file exists, with its states: plan must
// neither create one nor change one.
func ledgerState(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("jobs.ledger.db"); err != nil {
		return "absent"
	}
	st, err := store.Open("jobs.ledger.db", store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	known, err := st.Known(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(known)
	return string(b)
}

// TestPlanPredictsRun: the number of jobs plan says run would submit is the
// number run submits.
func TestPlanPredictsRun(t *testing.T) {
	planFixture(t)
	buildLedger(t)
	srv, env := fakeAPI(t, runcomfytest.Config{})
	for _, flags := range [][]string{nil, {"--retry-failed", "--resubmit-unknown"}} {
		r := runMain(t, env, append([]string{"plan", "jobs.yaml", "--json"}, flags...)...)
		var p planJSON
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
			t.Fatalf("plan --json: %v\n%s", err, r.stdout)
		}
		before := srv.Stats().Created
		runMain(t, env, append([]string{"run", "jobs.yaml", "-j", "4", "--rps", "1000", "--poll-max", "50ms"}, flags...)...)
		if got := int(srv.Stats().Created - before); got != p.ToSubmit {
			t.Fatalf("flags %v: plan said %d submissions, run made %d", flags, p.ToSubmit, got)
		}
	}
}

// TestPlanInvalidManifest: plan validates first, exits 2, and asks nothing.
func TestPlanInvalidManifest(t *testing.T) {
	planFixture(t)
	srv, env := fakeAPI(t, runcomfytest.Config{})
	os.WriteFile("jobs.yaml", []byte("model: wan-ai/wan-2-6/flash/image-to-video\njobs:\n  - {id: a, input: {prompt: p, img_url: \"https://e.com/a.png\", duration: 7}}\n"), 0o644)
	r := runMain(t, env, "plan", "jobs.yaml")
	if r.code != 2 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	if want := "error: jobs.yaml:3:74: job a: input.duration: enum: 7 is not one of 5, 10, 15\n"; r.stderr != want {
		t.Fatalf("stderr %q, want %q", r.stderr, want)
	}
	if st := srv.Stats(); st != (runcomfytest.Stats{}) {
		t.Fatalf("calls made: %+v", st)
	}
}
