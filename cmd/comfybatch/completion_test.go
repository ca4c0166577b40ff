package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpHasExamples: every command's --help shows at least one example.
func TestHelpHasExamples(t *testing.T) {
	a := &app{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	for _, c := range a.rootCommand().Commands() {
		if c.Name() == "help" {
			continue
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("`comfybatch %s --help` has no example", c.Name())
		}
		r := runMain(t, nil, c.Name(), "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("`comfybatch %s --help`: exit %d, no examples shown", c.Name(), r.code)
		}
	}
}

func TestVersion(t *testing.T) {
	r := runMain(t, nil, "--version")
	if r.code != 0 || r.stdout != "comfybatch version "+versionString()+"\n" || !strings.HasPrefix(r.stdout, "comfybatch version "+version) {
		t.Fatalf("--version: exit %d, %q", r.code, r.stdout)
	}
	// The built binary names the commit it was built from (in a checkout).
	b := runBinary(t, nil, "--version")
	inCheckout := exec.Command("git", "rev-parse", "HEAD").Run() == nil
	if b.code != 0 || inCheckout && !strings.Contains(b.stdout, "(") {
		t.Fatalf("the binary's --version: exit %d, %q; want the module version and the commit", b.code, b.stdout)
	}
}

// --json is refused where there is no data to print in it (run prints its
// closing summary with it: TestRunSelection), and fake-server
// refuses shares outside 0..1: each a usage error, exit 2.
func TestUsageRefusals(t *testing.T) {
	for _, args := range [][]string{
		{"results", "x.yaml", "--format", "csv", "--json"},
		{"fake-server", "--json"},
		{"init", "x.yaml", "--json"},
		{"completion", "bash", "--json"},
		{"help", "--json"},
		{"fake-server", "--rate-429", "1.5"},
		{"fake-server", "--truncate-rate", "-0.1"},
		{"fake-server", "--max-running", "-1"},
	} {
		if r := runMain(t, nil, args...); r.code != 2 || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		r := runMain(t, nil, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, "comfybatch") {
			t.Errorf("completion %s: exit %d, %d bytes", shell, r.code, len(r.stdout))
		}
	}
	if r := runMain(t, nil, "completion", "tcsh"); r.code != 2 {
		t.Errorf("completion tcsh: exit %d, want 2", r.code)
	}
	// --job completes from the ledger, read-only.
	manifest := statusFixture(t)
	r := runMain(t, nil, "__complete", "status", manifest, "--json", "--job", "re")
	if got := strings.Fields(r.stdout); len(got) < 3 || got[0] != "retried" || got[1] != "refused" {
		t.Errorf("--job completion for \"re\": %q", r.stdout)
	}
	// The manifest argument completes manifests, not ledgers or WAL files:
	// the shell filters files by these extensions (directive 8).
	for _, c := range []string{"run", "plan", "validate", "status", "results", "cancel"} {
		r := runMain(t, nil, "__complete", c, "")
		if r.stdout != "yaml\nyml\njson\n:8\n" {
			t.Errorf("%s's manifest completes to %q, want the yaml, yml and json files", c, r.stdout)
		}
	}
	r = runMain(t, nil, "__complete", "results", manifest, "--format", "")
	if !strings.Contains(r.stdout, "jsonl\ncsv\n") {
		t.Errorf("--format completion: %q", r.stdout)
	}
}

// A token of a few characters is refused before anything is sent: every
// answer is scrubbed of the token, and one that short would garble them.
// Where it came from is named, and the token itself is never printed.
func TestShortTokenRefused(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(manifest, []byte("model: wan-ai/wan-2-6/flash/image-to-video\njobs:\n  - id: a\n    input: {prompt: p, img_url: \"https://example.com/a.png\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runMain(t, map[string]string{"RUNCOMFY_TOKEN": "xq7"}, "run", manifest, "--api-base", "http://127.0.0.1:9")
	if r.code != 2 || !strings.Contains(r.stderr, "RUNCOMFY_TOKEN is 3 characters long") || strings.Contains(r.stderr, "xq7") {
		t.Fatalf("exit %d, stderr %q; want 2, naming RUNCOMFY_TOKEN and its length, not the token", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "jobs.ledger.db")); err == nil {
		t.Fatal("a refused token left a ledger behind")
	}
}
