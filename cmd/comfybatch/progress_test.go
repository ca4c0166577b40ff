package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"comfybatch/lifecycle"
	"comfybatch/runner"
)

// copyExample copies examples/<name> (and prompts.csv) into a temp dir, so
// that runs leave the checkout alone, and returns the manifest's path.
func copyExample(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{name, "prompts.csv"} {
		data, err := os.ReadFile(filepath.Join("../../examples", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, name)
}

var noToken = []string{"RUNCOMFY_TOKEN=", "RUNCOMFY_API_TOKEN=", "YOUR_API_TOKEN="}

// runOnTerminal runs the binary with a pseudo-terminal as its stdin,
// stdout and stderr, as a person at a terminal would, and returns all it
// drew and its exit code.
func runOnTerminal(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(append(os.Environ(), "TERM=xterm-256color"), env...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(&out, tty)
		copied <- err
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("comfybatch %v did not finish on the terminal", args)
	}
	// Once the child is gone, reading the terminal ends with EIO (Linux)
	// after what it wrote has been drained.
	select {
	case err := <-copied:
		if err != nil && !errors.Is(err, syscall.EIO) {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal's output never ended")
	}
	return out.String(), exitCodeOf(werr)
}

// settledRE is what the live display's bar line ends with.
var settledRE = regexp.MustCompile(`(\d+)/(\d+) settled`)

// TestProgressOnTerminal: on a terminal, run draws a live display — a bar
// of settled jobs, the jobs per state, rate, ETA and money — and redraws it
// in place as jobs move, ending with every job settled.
func TestProgressOnTerminal(t *testing.T) {
	t.Parallel()
	manifest := copyExample(t, "quickstart.yaml")
	out, code := runOnTerminal(t, noToken, "run", manifest, "--fake")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// Redrawn in place: the cursor goes back up over the display.
	if !strings.Contains(out, "\x1b[3A") {
		t.Errorf("no in-place redraw (cursor up 3 lines) in:\n%q", out)
	}
	seen := map[string]bool{}
	for _, m := range settledRE.FindAllStringSubmatch(out, -1) {
		seen[m[1]+"/"+m[2]] = true
	}
	if !seen["0/3"] || !seen["3/3"] {
		t.Errorf("the display did not go from 0/3 to 3/3 settled; it showed %v", seen)
	}
	for _, want := range []string{"queued ", "running ", "done ", "failed 0", "unknown 0", "jobs/s", "ETA ", "spent $", "est. total $"} {
		if !strings.Contains(out, want) {
			t.Errorf("the display never showed %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "\x1b[32mdone") {
		t.Errorf("done jobs are not coloured without NO_COLOR")
	}
	// The summary is printed once the display has stopped, below it.
	if i, j := strings.LastIndex(out, "settled"), strings.LastIndex(out, "submitted 3 this run"); i < 0 || j < i {
		t.Errorf("the run's summary is not below the display")
	}
}

// TestProgressOnTerminalNoColorQuiet: NO_COLOR drops colour but keeps the
// display; --quiet drops the display altogether.
func TestProgressOnTerminalNoColorQuiet(t *testing.T) {
	t.Parallel()
	out, code := runOnTerminal(t, append(noToken, "NO_COLOR=1"), "run", copyExample(t, "quickstart.yaml"), "--fake")
	if code != 0 || !strings.Contains(out, "3/3 settled") {
		t.Fatalf("NO_COLOR: exit %d, or no display:\n%s", code, out)
	}
	if regexp.MustCompile(`\x1b\[3[0-9]m`).MatchString(out) {
		t.Errorf("colour codes despite NO_COLOR:\n%q", out)
	}
	out, code = runOnTerminal(t, noToken, "run", copyExample(t, "quickstart.yaml"), "--fake", "--quiet")
	if code != 0 || strings.Contains(out, "settled") || strings.Contains(out, "\x1b[") {
		t.Fatalf("--quiet: exit %d, and the display or escape codes showed:\n%q", code, out)
	}
}

// someDoneRE matches a plain progress line's field counting one or more
// done jobs.
var someDoneRE = regexp.MustCompile(`(^|\s)done=[1-9]`)

// TestProgressPlain: off a terminal, progress is a plain log line every
// --progress-every, with no escape codes anywhere.
func TestProgressPlain(t *testing.T) {
	t.Parallel()
	r := runBinary(t, noToken, "run", copyExample(t, "quickstart.yaml"), "--fake", "--progress-every", "200ms")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	lines, sawDone := 0, false
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "msg=progress") {
			lines++
			sawDone = sawDone || someDoneRE.MatchString(l)
			if !strings.Contains(l, "settled=") || !strings.Contains(l, "spent_usd=") {
				t.Errorf("progress line lacks fields: %s", l)
			}
		}
	}
	if lines < 2 {
		t.Errorf("%d progress lines, want several:\n%s", lines, r.stderr)
	}
	if strings.Contains(r.stderr+r.stdout, "\x1b") {
		t.Errorf("escape codes off a terminal:\n%q", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("run wrote to stdout: %q", r.stdout)
	}
	// The lines follow the run: the first sees nothing settled, a later one
	// sees jobs done (the last word is the run's own summary line). "done="
	// alone would also match "done=0"; a progress line must count some.
	if !strings.Contains(r.stderr, "settled=0/3 pending=3") || !sawDone {
		t.Errorf("the lines did not follow the run (no progress line with done=1 or more):\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "done 3 · submitted 3 this run") {
		t.Errorf("no summary line:\n%s", r.stderr)
	}
}

func TestProgressLines(t *testing.T) {
	p := runner.Progress{
		Counts: map[lifecycle.State]int{lifecycle.Queued: 4, lifecycle.Running: 2, lifecycle.Done: 3, lifecycle.Failed: 1, lifecycle.Pending: 10},
		Total:  20, Settled: 4, SettledAtStart: 0, DeepestQueue: 31, Submitted: 10,
		Elapsed: 4 * time.Second, Priced: true, SpentUSD: 1, InFlightUSD: 1.5, RemainingUSD: 2.5, MaxCostUSD: 10,
	}
	if got, want := statesLine(p, false, 0), "  queued 4 (deepest #31) · running 2 · done 3 · failed 1 · unknown 0 · pending 10"; got != want {
		t.Errorf("states line\n got %q\nwant %q", got, want)
	}
	if got, want := moneyLine(p, 0), "  1.00 jobs/s · ETA 16s · spent $1.00 · est. total $5.00 · cap $10.00 · submitted 10"; got != want {
		t.Errorf("money line\n got %q\nwant %q", got, want)
	}
	if got := statesLine(p, true, 0); !strings.Contains(got, "\x1b[31mfailed 1\x1b[0m") || strings.Contains(got, "\x1b[33m") {
		t.Errorf("colours: failed in red, unknown (0) plain; got %q", got)
	}
	for _, c := range []struct {
		in    string
		width int
		want  string
	}{
		{"abcdef", 4, "abcd"},
		{"abc", 10, "abc"},
		{"a\x1b[31mbcd\x1b[0mef", 3, "a\x1b[31mbc\x1b[0m"},
		{"ab·cd", 3, "ab·"},
	} {
		if got := clip(c.in, c.width); got != c.want {
			t.Errorf("clip(%q, %d) = %q, want %q", c.in, c.width, got, c.want)
		}
	}
}
