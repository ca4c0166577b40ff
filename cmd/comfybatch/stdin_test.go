package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestManifestFromStdin: validate and plan read the manifest from stdin
// given "-" (through the built binary, a real pipe); plan then reads no
// ledger and makes none; run and the commands that find a ledger by the
// manifest's path refuse "-" (exit 2).
func TestManifestFromStdin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := string(starter)
	broken := "model: some/model\njobs:\n  - id a\n    input: {prompt: x}\n"
	for _, c := range []struct {
		args        []string
		stdin       string
		code        int
		out, errout string // substrings of stdout and stderr
	}{
		{[]string{"validate", "-"}, good, 0, "<stdin>: 5 jobs, all valid\n", ""},
		{[]string{"validate", "-", "--json"}, good, 0, `"manifest": "<stdin>"`, ""},
		{[]string{"validate", "-"}, broken, 2, "", "error: <stdin>:3: YAML syntax: a key without its ':'?"},
		{[]string{"plan", "-", "--fake"}, good, 0, "plan for <stdin>: 5 jobs; ledger none (the manifest came from stdin: every job is planned as new)", ""},
		{[]string{"plan", "-", "--fake", "--ledger", "x.db"}, good, 2, "", "drop --ledger"},
		{[]string{"run", "-", "--fake"}, good, 2, "", "run needs the manifest in a file, not on stdin (-)"},
		{[]string{"status", "-"}, good, 2, "", "status needs the manifest in a file"},
		{[]string{"results", "-"}, good, 2, "", "results needs the manifest in a file"},
		{[]string{"cancel", "-"}, good, 2, "", "cancel needs the manifest in a file"},
	} {
		cmd := exec.Command(binPath, c.args...)
		cmd.Dir, cmd.Stdin = dir, strings.NewReader(c.stdin)
		cmd.Env = append(os.Environ(), noToken...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code := exitCodeOf(cmd.Run())
		if code != c.code || !strings.Contains(stdout.String(), c.out) || !strings.Contains(stderr.String(), c.errout) {
			t.Errorf("%v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", c.args, code, c.code, stdout.String(), stderr.String())
		}
	}
	// Nothing was written: no ledger named after "-", no output folder.
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("reading a manifest from stdin left %v behind", left)
	}
}
