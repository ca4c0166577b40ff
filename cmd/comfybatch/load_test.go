package main

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

var update = flag.Bool("update", false, "rewrite the .golden files under testdata/ from the current output")

// mainResult is one in-process run of the command line.
type mainResult struct {
	code           int
	stdout, stderr string
}

// runMain runs the command line in-process with env as its whole
// environment.
func runMain(t *testing.T, env map[string]string, args ...string) mainResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(nil, args, &out, &errb, func(k string) string { return env[k] })
	return mainResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// checkGolden compares got with the file at path, or rewrites it with -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// extraArgs reads a manifest's "# args: ..." first line: the flags its
// golden case is run with.
func extraArgs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "# args:"); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// TestSchemaErrorReports runs `validate` on every broken manifest in
// testdata/schema-errors and compares the whole report (stderr) with its
// .golden file. Each must exit 2 with nothing on stdout. `run` on the same
// manifest must print the same report, make no API request and create no
// ledger: nothing invalid is ever paid for.
func TestSchemaErrorReports(t *testing.T) {
	srv := runcomfytest.New(runcomfytest.Config{Token: testToken})
	env := map[string]string{"RUNCOMFY_API_BASE": srv.Start(), "RUNCOMFY_TOKEN": testToken}
	defer srv.Close()
	t.Chdir("../../testdata/schema-errors")
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("%d broken manifests, want at least 20", len(files))
	}
	ledgers := t.TempDir()
	for _, file := range files {
		name := strings.TrimSuffix(file, ".yaml")
		t.Run(name, func(t *testing.T) {
			args := extraArgs(t, file)
			v := runMain(t, env, append([]string{"validate", file}, args...)...)
			if v.code != 2 || v.stdout != "" {
				t.Fatalf("validate: exit %d, stdout %q; want 2 and nothing", v.code, v.stdout)
			}
			if !strings.Contains(v.stderr, file) && !strings.Contains(v.stderr, "--schema") {
				t.Errorf("the report names neither the manifest nor the flag:\n%s", v.stderr)
			}
			checkGolden(t, name+".golden", v.stderr)

			ledger := filepath.Join(ledgers, name+".ledger.db")
			r := runMain(t, env, append([]string{"run", file, "--ledger", ledger}, args...)...)
			if r.code != 2 || r.stderr != v.stderr {
				t.Errorf("run: exit %d, want 2 with the same report as validate:\n%s", r.code, r.stderr)
			}
			for _, p := range []string{ledger, name + ".ledger.db"} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("run on an invalid manifest created the ledger %s", p)
				}
			}
		})
	}
	st := srv.Stats()
	st.Model = 0 // reading the catalog's schemas, which the jobs are checked against, is free
	if st != (runcomfytest.Stats{}) {
		t.Fatalf("invalid manifests reached the API: %+v", st)
	}
}

// TestReportReadsWell pins the shape of a multi-problem report, which the
// goldens show only through Main.
func TestReportReadsWell(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile("jobs.yaml", []byte("model: wan-ai/wan-2-6/flash/image-to-video\njobs:\n  - id: a\n    input: {prompt: p, img_url: \"https://e.com/a.png\", seed: -1}\n  - id: b\n    input: {prompt: p}\n"), 0o644)
	r := runMain(t, nil, "validate", "jobs.yaml")
	want := "error: jobs.yaml: 2 problems:\n" +
		"  jobs.yaml:4:62: job a: input.seed: minimum: -1 is below the minimum 0\n" +
		"  jobs.yaml:5:5: job b: input.img_url: required: img_url is required\n"
	if r.code != 2 || r.stderr != want {
		t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", r.code, r.stderr, want)
	}
	// One problem is one line.
	os.WriteFile("jobs.yaml", []byte("model: wan-ai/wan-2-6/flash/image-to-video\njobs:\n  - id: b\n    input: {prompt: p}\n"), 0o644)
	r = runMain(t, nil, "validate", "jobs.yaml")
	if want := "error: jobs.yaml:3:5: job b: input.img_url: required: img_url is required\n"; r.stderr != want {
		t.Fatalf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}
}
