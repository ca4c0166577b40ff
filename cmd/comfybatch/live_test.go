package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/runner"
)

// session is the binary running on a pseudo-terminal that a test talks to
// while it runs: it reads what the program draws, types keys, resizes.
type session struct {
	t      *testing.T
	cmd    *exec.Cmd
	tty    *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	copied chan struct{}
	waited chan error
}

func startOnTerminal(t *testing.T, env []string, cols uint16, args ...string) *session {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(append(os.Environ(), "TERM=xterm-256color", "NO_COLOR=1"), env...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, cmd: cmd, tty: tty, copied: make(chan struct{}), waited: make(chan error, 1)}
	go func() {
		defer close(s.copied)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { s.waited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		tty.Close()
	})
	return s
}

func (s *session) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// waitFor waits until what was drawn contains want. The deadline only keeps
// a broken program from hanging the test.
func (s *session) waitFor(want string) {
	s.t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(s.output(), want) {
			return
		}
		select {
		case err := <-s.waited:
			s.waited <- err
			<-s.copied
			if strings.Contains(s.output(), want) {
				return
			}
			s.t.Fatalf("exited (%v) without drawing %q:\n%s", err, want, s.output())
		default:
		}
	}
	s.t.Fatalf("never drew %q:\n%s", want, s.output())
}

// typeKeys writes to the terminal as a person typing would: Ctrl-C ("\x03")
// makes the terminal echo ^C and send SIGINT.
func (s *session) typeKeys(keys string) {
	s.t.Helper()
	if _, err := s.tty.Write([]byte(keys)); err != nil {
		s.t.Fatal(err)
	}
}

// resize changes the terminal's width; it returns how much had been drawn
// before, so that a screen can replay the output with the change in place.
func (s *session) resize(cols uint16) int {
	s.t.Helper()
	n := len(s.output())
	if err := pty.Setsize(s.tty, &pty.Winsize{Rows: 40, Cols: cols}); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// wait waits for the program to exit and returns all it drew and its exit
// code.
func (s *session) wait() (string, int) {
	s.t.Helper()
	var err error
	select {
	case err = <-s.waited:
	case <-time.After(2 * time.Minute):
		s.t.Fatalf("did not exit:\n%s", s.output())
	}
	select {
	case <-s.copied:
	case <-time.After(10 * time.Second):
		s.t.Fatal("the terminal's output never ended")
	}
	return s.output(), exitCodeOf(err)
}

// screen is a small terminal emulator, enough to see what a person would
// see: text wraps at the width, CR, LF, cursor up (CSI A), erase below
// (CSI J) and erase line (CSI K); other escapes are ignored. A resize
// rewraps the lines, as most terminals do. It has no height: rows that
// would scroll away stay.
type screen struct {
	width   int
	rows    [][]rune
	cont    []bool // the row continues the one above: the text wrapped
	r, c    int
	wrapped int // how many times a line was wider than the screen
}

func newScreen(width int) *screen {
	return &screen{width: width, rows: [][]rune{nil}, cont: []bool{false}}
}

func (s *screen) row(r int) {
	for len(s.rows) <= r {
		s.rows = append(s.rows, nil)
		s.cont = append(s.cont, false)
	}
}

func (s *screen) feed(text string) {
	rs := []rune(text)
	for i := 0; i < len(rs); i++ {
		ch := rs[i]
		switch {
		case ch == '\x1b' && i+1 < len(rs) && rs[i+1] == '[':
			j := i + 2
			for j < len(rs) && !(rs[j] >= '@' && rs[j] <= '~') {
				j++
			}
			if j >= len(rs) {
				return
			}
			n, err := strconv.Atoi(string(rs[i+2 : j]))
			if err != nil {
				n = 1
			}
			switch rs[j] {
			case 'A':
				s.r = max(s.r-n, 0)
			case 'J':
				s.rows[s.r] = s.rows[s.r][:min(s.c, len(s.rows[s.r]))]
				s.rows, s.cont = s.rows[:s.r+1], s.cont[:s.r+1]
			case 'K':
				s.rows[s.r] = s.rows[s.r][:min(s.c, len(s.rows[s.r]))]
			}
			i = j
		case ch == '\x1b':
			i++
		case ch == '\r':
			s.c = 0
		case ch == '\n':
			s.r++
			s.row(s.r)
		case ch < ' ':
		default:
			if s.c >= s.width {
				s.wrapped++
				s.r, s.c = s.r+1, 0
				s.row(s.r)
				s.rows[s.r], s.cont[s.r] = s.rows[s.r][:0], true
			}
			line := s.rows[s.r]
			for len(line) <= s.c {
				line = append(line, ' ')
			}
			line[s.c] = ch
			s.rows[s.r] = line
			s.c++
		}
	}
}

// resize rewraps every line at the new width; the cursor, which sits at
// the start of the last row between frames, stays there.
func (s *screen) resize(width int) {
	var lines [][]rune
	for i, r := range s.rows[:s.r] {
		if s.cont[i] && len(lines) > 0 {
			lines[len(lines)-1] = append(lines[len(lines)-1], r...)
			continue
		}
		lines = append(lines, append([]rune(nil), r...))
	}
	s.width, s.rows, s.cont = width, nil, nil
	for _, l := range lines {
		first := true
		for len(l) > width {
			s.rows, s.cont = append(s.rows, l[:width]), append(s.cont, !first)
			l, first = l[width:], false
		}
		s.rows, s.cont = append(s.rows, l), append(s.cont, !first)
	}
	s.rows, s.cont = append(s.rows, nil), append(s.cont, false)
	s.r, s.c = len(s.rows)-1, 0
}

func (s *screen) lines() []string {
	out := make([]string, len(s.rows))
	for i, r := range s.rows {
		out[i] = strings.TrimRight(string(r), " ")
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// logical is the screen's lines as written, wrapped rows joined.
func (s *screen) logical() []string {
	var out []string
	for i, l := range s.lines() {
		if s.cont[i] && len(out) > 0 {
			out[len(out)-1] += l
			continue
		}
		out = append(out, l)
	}
	return out
}

func (s *screen) String() string { return strings.Join(s.lines(), "\n") }

// waitForAfter is waitFor for what was drawn after the first from bytes.
func (s *session) waitForAfter(from int, want string) {
	s.t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if out := s.output(); len(out) > from && strings.Contains(out[from:], want) {
			return
		}
	}
	s.t.Fatalf("never drew %q after byte %d:\n%s", want, from, s.output())
}

// stateRowRE is a whole states line: fields "name N", one optionally with
// its deepest queue position, none cut.
var stateRowRE = regexp.MustCompile(`^  [a-z]+ \d+( \(deepest #\d+\))?( · [a-z]+ \d+)*$`)

// displayRows checks the rows of the display left on a screen of the given
// width: one bar, each line whole and within the width, nothing wrapped,
// and returns the rows under the bar.
func displayRows(t *testing.T, sc *screen, width int) []string {
	t.Helper()
	lines := sc.lines()
	bar := -1
	for i, l := range lines {
		if strings.Contains(l, "settled") {
			if bar >= 0 {
				t.Errorf("two bars on the screen (rows %d and %d): an old frame was left behind:\n%s", bar, i, sc)
			}
			bar = i
		}
	}
	if bar < 0 || bar+2 >= len(lines) {
		t.Fatalf("no display on the screen:\n%s", sc)
	}
	if l := strings.TrimLeft(lines[bar], " "); !strings.HasPrefix(l, "[") && !strings.HasPrefix(l, "comfybatch") {
		t.Errorf("the bar row does not start at its own line: %q", lines[bar])
	}
	for i := bar; i < bar+3; i++ {
		if sc.cont[i] || (i+1 < len(sc.cont) && sc.cont[i+1]) || len([]rune(lines[i])) > width {
			t.Errorf("display row %d wider than %d columns or wrapped: %q", i, width, lines[i])
		}
	}
	return lines[bar+1 : bar+3]
}

// startQueued serves the simulated API with jobs that stay in the queue, and
// writes a manifest of three jobs for it.
func startQueued(t *testing.T) (*runcomfytest.Server, string, string) {
	t.Helper()
	srv := runcomfytest.New(runcomfytest.Config{QueueTime: time.Hour, RunTime: time.Second, CostUSD: 0.1, Token: testToken, Seed: 1})
	api := srv.Start()
	t.Cleanup(srv.Close)
	manifest, _ := writeManifest(t, t.TempDir(), 3)
	return srv, api, manifest
}

// TestLiveDisplayWidths: at 80 and at 50 columns the live display keeps
// each line within the terminal, dropping whole fields, least important
// first, instead of cutting words: what is done, failed and spent stays.
func TestLiveDisplayWidths(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cols          int
		keep, dropped []string
	}{
		{80, []string{"done 3", "failed 0", "running 0", "queued 0", "unknown 0", "pending 0", "spent $", "est. total $", "ETA", "jobs/s", "submitted 3"}, nil},
		{50, []string{"done 3", "failed 0", "running 0", "queued 0", "spent $", "est. total $", "ETA"}, []string{"pending", "jobs/s", "submitted"}},
	} {
		s := startOnTerminal(t, noToken, uint16(c.cols), "run", copyExample(t, "quickstart.yaml"), "--fake")
		out, code := s.wait()
		if code != 0 {
			t.Fatalf("%d columns: exit %d:\n%s", c.cols, code, out)
		}
		sc := newScreen(c.cols)
		sc.feed(out)
		rows := displayRows(t, sc, c.cols)
		if !stateRowRE.MatchString(rows[0]) {
			t.Errorf("%d columns: states line not made of whole fields: %q", c.cols, rows[0])
		}
		both := strings.Join(rows, "\n")
		for _, w := range c.keep {
			if !strings.Contains(both, w) {
				t.Errorf("%d columns: %q is missing:\n%s", c.cols, w, both)
			}
		}
		for _, w := range c.dropped {
			if strings.Contains(both, w) {
				t.Errorf("%d columns: %q should have made room:\n%s", c.cols, w, both)
			}
		}
	}
}

// TestLiveDisplayResizeAndCtrlC: a terminal narrowed from 80 to 50 columns
// mid-run is redrawn cleanly (the old, rewrapped frame is gone, the new
// one fits); Ctrl-C's message lands on its own line above the display, the
// ^C the terminal echoes is wiped, and the closing line counts the queued
// jobs as queued.
func TestLiveDisplayResizeAndCtrlC(t *testing.T) {
	t.Parallel()
	_, api, manifest := startQueued(t)
	s := startOnTerminal(t, tokenEnv(api), 80, "run", manifest)
	s.waitFor("queued 3")
	mark := s.resize(50)
	s.waitForAfter(mark, "settled")
	s.typeKeys("\x03")
	out, code := s.wait()
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInterrupted, out)
	}
	sc := newScreen(80)
	sc.feed(out[:mark])
	sc.resize(50)
	sc.feed(out[mark:])
	rows := displayRows(t, sc, 50)
	if !stateRowRE.MatchString(rows[0]) || !strings.Contains(rows[0], "queued 3") {
		t.Errorf("states line at 50 columns: %q", rows[0])
	}
	if !strings.Contains(out, "^C") {
		t.Fatalf("the terminal did not echo ^C:\n%q", out)
	}
	var stopping bool
	for _, l := range sc.logical() {
		if strings.Contains(l, "^C") && strings.TrimSpace(l) != "^C" {
			t.Errorf("the echoed ^C shares a line with something: %q", l)
		}
		if strings.Contains(l, "stopping: no new submissions") && strings.HasPrefix(l, "time=") {
			stopping = true
		}
	}
	if !stopping {
		t.Errorf("the stopping message is not on a line of its own:\n%s", sc)
	}
	if !strings.Contains(out, "interrupted: 3 jobs still at RunComfy (3 queued); run the same command again") {
		t.Errorf("the closing line does not count the jobs as queued:\n%s", sc)
	}
}

// TestLiveDisplayOutage: when the API stops answering in the middle of a
// run, the display says so in one line, in place of the job counts (which
// would show queued jobs standing still), and the run waits.
func TestLiveDisplayOutage(t *testing.T) {
	t.Parallel()
	srv, api, manifest := startQueued(t)
	s := startOnTerminal(t, tokenEnv(api), 80, "run", manifest)
	s.waitFor("queued 3")
	srv.Close()
	mark := len(s.output())
	s.waitForAfter(mark, "RunComfy not answering for")
	s.typeKeys("\x03")
	out, code := s.wait()
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d (the run waits for the API):\n%s", code, exitInterrupted, out)
	}
	sc := newScreen(80)
	sc.feed(out)
	rows := displayRows(t, sc, 80)
	if !strings.Contains(rows[0], "RunComfy not answering for") || !strings.Contains(rows[0], "connection refused") {
		t.Errorf("the outage line: %q", rows[0])
	}
	if strings.Contains(rows[0], "queued") {
		t.Errorf("the outage line shows a queue: %q", rows[0])
	}
	if !strings.Contains(out, "interrupted: 3 jobs still at RunComfy (3 queued)") {
		t.Errorf("closing line:\n%s", sc)
	}
}

// TestFoldWarnings: while a live display is up, a warning that repeats
// (57 rate-limit lines in one run) is printed once and then counted, for
// the display's one line; errors and other warnings go through, and with
// no display every line does.
func TestFoldWarnings(t *testing.T) {
	var buf bytes.Buffer
	f := newFoldWarnings(slog.NewTextHandler(&buf, nil))
	log := slog.New(f)
	f.on.Store(true)
	for i := range 57 {
		log.With("op", "status").Warn("runcomfy: rate limited; slowing every call down", "rps", 10.0/float64(i+1))
		if i == 10 {
			log.Error("ledger write failed", "job", "a")
			log.Warn("submission rejected", "job", "b")
		}
	}
	out := buf.String()
	if n := strings.Count(out, "rate limited"); n != 1 {
		t.Errorf("the repeated warning was printed %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(out, "ledger write failed") || !strings.Contains(out, "submission rejected") {
		t.Errorf("an error or another warning was held back:\n%s", out)
	}
	if msg, n := f.repeats(); msg != "runcomfy: rate limited; slowing every call down" || n != 56 {
		t.Errorf("repeats() = %q, %d; want the warning and 56", msg, n)
	}
	if got, want := warningLine(f, false, 0), "  warning, 56 more times: runcomfy: rate limited; slowing every call down"; got != want {
		t.Errorf("display line\n got %q\nwant %q", got, want)
	}
	if got, want := warningLine(f, false, 50), "  warning, 56 more times: runcomfy: rate limited; "; got != want {
		t.Errorf("display line at 50 columns\n got %q\nwant %q", got, want)
	}
	if got := warningLine(newFoldWarnings(slog.NewTextHandler(io.Discard, nil)), false, 80); got != "" {
		t.Errorf("a line with nothing repeated: %q", got)
	}

	buf.Reset()
	f.on.Store(false)
	log.Warn("runcomfy: rate limited; slowing every call down")
	log.Warn("runcomfy: rate limited; slowing every call down")
	if n := strings.Count(buf.String(), "rate limited"); n != 2 {
		t.Errorf("without a display, %d lines of 2", n)
	}
}

// TestFitDropsByRank: fields go least important first, whole, and the line
// keeps its order.
func TestFitDropsByRank(t *testing.T) {
	fs := []field{{3, "aaaa 1"}, {1, "bbbb 2"}, {2, "cccc 3"}}
	for _, c := range []struct {
		width int
		want  string
	}{
		{0, "  aaaa 1 · bbbb 2 · cccc 3"},
		{26, "  aaaa 1 · bbbb 2 · cccc 3"},
		{25, "  bbbb 2 · cccc 3"},
		{16, "  bbbb 2"},
		{5, "  bbb"},
	} {
		if got := fit(c.width, fs...); got != c.want {
			t.Errorf("fit(%d) = %q, want %q", c.width, got, c.want)
		}
	}
	if got := rowsAt([]int{80, 80, 30}, 50); got != 5 {
		t.Errorf("rowsAt = %d, want 5 (two rewrapped lines of 80 at 50 columns take 2 rows each)", got)
	}
}

// TestOutageLines: during an outage the states line is one line saying so,
// fitted to the width, and a plain progress line says it too.
func TestOutageLines(t *testing.T) {
	p := runner.Progress{Counts: map[lifecycle.State]int{lifecycle.Queued: 12}, Total: 12,
		Outage: true, OutageFor: 42 * time.Second, OutageWhy: "connect: connection refused"}
	for _, c := range []struct {
		width int
		want  string
	}{
		{0, "  RunComfy not answering for 42s · connect: connection refused · waiting for it"},
		{80, "  RunComfy not answering for 42s · connect: connection refused · waiting for it"},
		{64, "  RunComfy not answering for 42s · connect: connection refused"},
		{50, "  RunComfy not answering for 42s"},
	} {
		if got := statesLine(p, false, c.width); got != c.want {
			t.Errorf("width %d:\n got %q\nwant %q", c.width, got, c.want)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("progress", progressAttrs(p)...)
	if !strings.Contains(buf.String(), `api="not answering for 42s (connect: connection refused); waiting, every job keeps its state"`) {
		t.Errorf("plain progress line: %s", buf.String())
	}
}
