package main

import (
	"io"
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
	if r.code != 0 || r.stdout != "comfybatch version "+version+"\n" {
		t.Fatalf("--version: exit %d, %q", r.code, r.stdout)
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
	r := runMain(t, nil, "__complete", "status", manifest, "--job", "re")
	if got := strings.Fields(r.stdout); len(got) < 3 || got[0] != "retried" || got[1] != "refused" {
		t.Errorf("--job completion for \"re\": %q", r.stdout)
	}
	r = runMain(t, nil, "__complete", "results", manifest, "--format", "")
	if !strings.Contains(r.stdout, "jsonl\ncsv\n") {
		t.Errorf("--format completion: %q", r.stdout)
	}
}
