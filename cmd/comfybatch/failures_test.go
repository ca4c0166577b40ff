package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/store"
)

// failuresFixture is the ledger of a large batch gone partly wrong, over two
// models: 9 jobs failed at RunComfy with one message (and no reported
// cost), 3 rejected at submission with another, 2 cut off (unknown), one
// cancelled, 5 done. It returns the manifest path.
func failuresFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	manifest := filepath.Join(dir, "batch.yaml")
	if err := os.WriteFile(manifest, []byte("model: m\njobs:\n  - input: {prompt: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "batch.ledger.db"), store.Options{Now: ticking(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	const flash, full = "wan-ai/wan-2-6/flash/image-to-video", "wan-ai/wan-2-6/image-to-video"
	var specs []store.Spec
	id := func(i int) string { return fmt.Sprintf("clip-%03d", i) }
	for i := range 20 {
		model := flash
		if i >= 15 {
			model = full
		}
		specs = append(specs, store.Spec{ID: id(i), Model: model, Input: json.RawMessage(fmt.Sprintf(`{"prompt":"p%d","duration":5}`, i)), Fingerprint: fmt.Sprintf("fp%03d", i)})
	}
	_, err = st.Sync(context.Background(), specs)
	must(err)
	submit := func(i int) {
		t.Helper()
		_, err := beginSubmit(st, id(i))
		must(err)
		must(submitted(st, id(i), fmt.Sprintf("req-%03d", i)))
	}
	for i := range 9 { // clip-000..008: failed at RunComfy, cost not reported
		submit(i)
		must(failed(st, id(i), "failed", "Input image is smaller than 300x300 pixels", nil))
	}
	for i := 9; i < 12; i++ { // clip-009..011: rejected, no request
		_, err := beginSubmit(st, id(i))
		must(err)
		must(st.Apply(context.Background(), id(i), lifecycle.Submit(lifecycle.Answer{HTTPStatus: 422, Message: "prompt: too long"}, "").Step))
	}
	for i := 12; i < 14; i++ { // clip-012, 013: cut off
		_, err := beginSubmit(st, id(i))
		must(err)
	}
	_, err = st.Recover(context.Background())
	must(err)
	submit(14) // clip-014: cancelled
	must(cancelled(st, id(14), "cancelled", "cancelled by `comfybatch cancel`"))
	for i := 15; i < 20; i++ { // clip-015..019: done, $0.50 each on the full model
		submit(i)
		cost := 0.5
		must(completed(st, id(i), "completed", []string{"https://files.example.com/" + id(i) + ".mp4"}, &cost))
		must(markDone(st, id(i)))
	}
	return manifest
}

// TestStatusFailures: status groups the jobs that need a person by
// message, with their first ids; --state lists just those jobs, one line
// each; --json carries the same groups and spend per model.
func TestStatusFailures(t *testing.T) {
	t.Parallel()
	manifest := failuresFixture(t)
	cases := []struct {
		golden string
		args   []string
	}{
		{"failures.txt", []string{"status", manifest}},
		{"failures.json", []string{"status", manifest, "--json"}},
		{"state-failed-unknown.txt", []string{"status", manifest, "--state", "failed,unknown"}},
		{"state-job-glob.txt", []string{"status", manifest, "--state", "failed", "--state", "cancelled", "--job", "clip-01*,clip-000"}},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			r := runBinary(t, nil, c.args...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			checkGolden(t, filepath.Join(statusDir, c.golden), normalize(r.stdout, manifest))
		})
	}

	// --state with --json: the jobs array holds those jobs and no other.
	r := runBinary(t, nil, "status", manifest, "--state", "unknown,cancelled", "--json")
	var out struct {
		Jobs []struct{ ID, State string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v:\n%s", r.code, err, r.stdout)
	}
	var got []string
	for _, j := range out.Jobs {
		got = append(got, j.ID+"="+j.State)
	}
	if want := "clip-012=unknown clip-013=unknown clip-014=cancelled"; strings.Join(got, " ") != want {
		t.Errorf("--state unknown,cancelled --json: %v, want %s", got, want)
	}
}

// TestStatusSelectionErrors: a state or job id that does not exist is a
// usage error naming what was meant, before anything is printed.
func TestStatusSelectionErrors(t *testing.T) {
	t.Parallel()
	manifest := failuresFixture(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--state", "faild"}, `--state "faild" is not a job state (did you mean failed?)`},
		{[]string{"--state", "canceled"}, "did you mean cancelled?"},
		{[]string{"--job", "cilp-007"}, "job cilp-007 is not in the ledger (did you mean clip-007?)"},
		{[]string{"--job", "clip-001,clip"}, "job clip is not in the ledger (did you mean 'clip-*'?)"},
		{[]string{"--job", "tub-*"}, `--job "tub-*" matches no job in the ledger`},
		{[]string{"--job", "clip-[0"}, "not a valid glob"},
		{[]string{"--job", ""}, "--job needs a job id"},
	}
	for _, c := range cases {
		r := runMain(t, nil, append([]string{"status", manifest}, c.args...)...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, c.want) {
			t.Errorf("status %v: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and %q", c.args, r.code, r.stdout, r.stderr, c.want)
		}
	}
}
