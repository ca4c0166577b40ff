package main

import (
	"strings"
	"testing"
)

// A mistyped command with --json on the line is still an unknown command,
// named with what was probably meant: the refusal of --json by commands
// that print no data must not take its place (it said "comfybatch has no
// data to print as JSON", and the user dropped --json to learn the typo).
func TestUnknownCommandWithJSON(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts", "jobs.yaml", "--json"}, `error: unknown command "stauts"; did you mean "status"?`},
		{[]string{"--json", "rn", "jobs.yaml"}, `error: unknown command "rn"; did you mean "run"?`},
		{[]string{"deploy", "--json"}, `error: unknown command "deploy"`},
	} {
		r := runMain(t, nil, c.args...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %s", c.args, r.code, r.stdout, r.stderr, c.want)
		}
	}
}
