package main

import (
	"strings"
	"testing"
)

// TestUsageMistakes: unknown commands, unknown flags and help for a command
// that does not exist are usage errors (exit 2, nothing on stdout), each
// naming what was probably meant when something is near.
func TestUsageMistakes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string // the whole of stderr
	}{
		{[]string{"rn", "jobs.yaml"}, `error: unknown command "rn"; did you mean "run"? (see ` + "`comfybatch --help`" + ` for the commands)`},
		{[]string{"rn", "jobs.yaml", "-j", "16"}, `error: unknown command "rn"; did you mean "run"? (see ` + "`comfybatch --help`" + ` for the commands)`},
		{[]string{"stauts", "jobs.yaml"}, `error: unknown command "stauts"; did you mean "status"? (see ` + "`comfybatch --help`" + ` for the commands)`},
		{[]string{"deploy"}, `error: unknown command "deploy" (see ` + "`comfybatch --help`" + ` for the commands)`},
		{[]string{"help", "valdiate"}, `error: unknown command "valdiate"; did you mean "validate"? (see ` + "`comfybatch --help`" + ` for the commands)`},
		{[]string{"run", "jobs.yaml", "--jsno"}, "error: unknown flag: --jsno; did you mean --json? (see `comfybatch run --help`)"},
		{[]string{"run", "jobs.yaml", "--max-cots", "5"}, "error: unknown flag: --max-cots; did you mean --max-cost? (see `comfybatch run --help`)"},
		{[]string{"run", "jobs.yaml", "-J", "4"}, "error: unknown shorthand flag: 'J' in -J; did you mean -j? (see `comfybatch run --help`)"},
		{[]string{"run", "jobs.yaml", "-fake"}, "error: unknown shorthand flag: 'f' in -fake; did you mean --fake? (see `comfybatch run --help`)"},
		{[]string{"validate", "jobs.yaml", "--mdia"}, "error: unknown flag: --mdia; did you mean --media? (see `comfybatch validate --help`)"},
		{[]string{"status", "jobs.yaml", "--bogus-flag"}, "error: unknown flag: --bogus-flag (see `comfybatch status --help`)"},
		{[]string{"--jsno"}, "error: unknown flag: --jsno; did you mean --json? (see `comfybatch --help`)"},
		{[]string{"run", "jobs.yaml", "-j", "many"}, `error: invalid argument "many" for "-j, --concurrency" flag: must be an integer (see ` + "`comfybatch run --help`)"},
		{[]string{"run"}, "error: run needs exactly one manifest path (got 0 arguments); see `comfybatch run --help`"},
	} {
		r := runMain(t, nil, c.args...)
		if r.code != 2 || r.stdout != "" || strings.TrimSuffix(r.stderr, "\n") != c.want {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and:\n%s", c.args, r.code, r.stdout, r.stderr, c.want)
		}
	}
	// Asking for help is not a mistake.
	for _, args := range [][]string{{}, {"help"}, {"help", "run"}, {"run", "--help"}} {
		if r := runMain(t, nil, args...); r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	// The built binary exits 2 too.
	if r := runBinary(t, nil, "rn", "jobs.yaml"); r.code != 2 || !strings.Contains(r.stderr, `did you mean "run"?`) {
		t.Errorf("the binary on an unknown command: exit %d, stderr %q", r.code, r.stderr)
	}
}
