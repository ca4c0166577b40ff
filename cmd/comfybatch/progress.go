package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"comfybatch/lifecycle"
	"comfybatch/runner"
)

// How often a live display on a terminal is refreshed from the ledger, and
// how often a plain progress line is logged elsewhere by default.
const (
	liveEvery  = 500 * time.Millisecond
	plainEvery = 5 * time.Second
)

// logSink is where logs go: stderr, or, while a live display is up, the
// display, which prints them above itself so they do not tear it.
type logSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *logSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (s *logSink) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

// loggerTo makes the logger for the chosen --log-format, -v and --quiet,
// writing to w (stderr, or the live display's sink that prints above it).
func (a *app) loggerTo(w io.Writer) (*slog.Logger, error) {
	level := slog.LevelInfo
	if a.verbose {
		level = slog.LevelDebug
	}
	if a.quiet {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	switch a.logFormat {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", a.logFormat)
}

// isTerminal reports whether w is a terminal a live display can draw on.
func (a *app) isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok || a.getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// display shows a run's progress: live on a terminal, as a log line every
// few seconds elsewhere (or with --log-format json, whose readers are
// programs), not at all with --quiet.
type display struct {
	every  time.Duration // <0: no progress at all
	update func(runner.Progress)
	stop   func() // draws the last snapshot and gives stderr back
}

// newDisplay picks the display. folded is the logger's warning folder: a
// live display turns it on and shows what it holds back.
func (a *app) newDisplay(sink *logSink, folded *foldWarnings, log *slog.Logger, plain time.Duration) *display {
	switch {
	case a.quiet:
		return &display{every: -1, update: func(runner.Progress) {}, stop: func() {}}
	case a.logFormat == "text" && a.isTerminal(a.stderr):
		return a.liveDisplay(sink, folded)
	}
	return &display{every: plain, update: func(p runner.Progress) {
		if !p.Final { // the run's own summary line says how it ended
			log.Info("progress", progressAttrs(p)...)
		}
	}, stop: func() {}}
}

// progressAttrs is one plain progress line's fields.
func progressAttrs(p runner.Progress) []any {
	args := []any{"settled", fmt.Sprintf("%d/%d", p.Settled, p.Total)}
	if p.Outage {
		args = append(args, "api", fmt.Sprintf("not answering for %s (%s); waiting, every job keeps its state", p.OutageFor.Round(time.Second), p.OutageWhy))
	}
	for _, st := range lifecycle.States {
		if n := p.Counts[st]; n > 0 {
			args = append(args, string(st), n)
			if st == lifecycle.Queued && p.DeepestQueue > 0 {
				args = append(args, "deepest_queue", p.DeepestQueue)
			}
		}
	}
	args = append(args, "rate", fmt.Sprintf("%.2f/s", p.Rate()))
	if eta, ok := p.ETA(); ok {
		args = append(args, "eta", eta.Round(time.Second).String())
	}
	args = append(args, "spent_usd", round(p.SpentUSD))
	if p.Priced {
		args = append(args, "estimated_usd", round(p.EstimatedUSD()))
	}
	if p.MaxCostUSD > 0 {
		args = append(args, "max_cost_usd", p.MaxCostUSD)
	}
	return args
}

// liveDisplay draws a bar of settled jobs with two lines under it, redrawn
// in place by mpb: the jobs by state (or, during an outage, one line saying
// so), then throughput, ETA and money; and a fourth line counting the
// repeats of a warning once one comes again (see foldWarnings).
func (a *app) liveDisplay(sink *logSink, folded *foldWarnings) *display {
	var last atomic.Pointer[runner.Progress]
	color := a.getenv("NO_COLOR") == ""
	folded.on.Store(true)
	tw := &termWriter{out: a.stderr, size: func() (int, int) { return termSize(a.stderr) }}
	p := mpb.New(mpb.WithConsoleWriter(tw), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	line := func(render func(runner.Progress, int) string) mpb.BarFiller {
		return mpb.BarFillerFunc(func(w io.Writer, st decor.Statistics) error {
			s := ""
			if lp := last.Load(); lp != nil {
				s = render(*lp, st.AvailableWidth)
			}
			_, err := io.WriteString(w, s+"\n")
			return err
		})
	}
	warnLine := mpb.BarFillerFunc(func(w io.Writer, st decor.Statistics) error {
		s := warningLine(folded, color, st.AvailableWidth)
		if s == "" {
			return nil // no row at all
		}
		_, err := io.WriteString(w, s+"\n")
		return err
	})
	var bar *mpb.Bar // made at the first snapshot, which knows the total
	update := func(pr runner.Progress) {
		last.Store(&pr)
		if bar == nil { // the runner calls update from one goroutine at a time
			bar = p.New(int64(pr.Total), mpb.BarStyle().Lbound("[").Rbound("]"),
				mpb.PrependDecorators(decor.Any(func(st decor.Statistics) string {
					// The name goes first when the terminal is narrow.
					if st.AvailableWidth < 60 {
						return ""
					}
					return "comfybatch "
				})),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
					if lp := last.Load(); lp != nil {
						return fmt.Sprintf(" %d/%d settled", lp.Settled, lp.Total)
					}
					return ""
				})),
				mpb.BarBtmExtender(line(func(p runner.Progress, w int) string { return statesLine(p, color, w) }),
					line(moneyLine), warnLine))
			// Logs now print above the display instead of through it.
			sink.set(p)
		}
		bar.SetTotal(int64(pr.Total), false)
		bar.SetCurrent(int64(pr.Settled))
	}
	stop := func() {
		if bar != nil && !bar.Completed() {
			// Jobs are left (interrupted, capped, failed to submit): the
			// bar stays as it is rather than jump to full.
			bar.Abort(false)
		}
		p.Wait()
		folded.on.Store(false)
		sink.set(a.stderr)
		// A ^C the terminal echoed after the last frame would begin the
		// next line: what follows starts at the left, on a clear line.
		io.WriteString(a.stderr, "\r\x1b[K")
	}
	return &display{every: liveEvery, update: update, stop: stop}
}

// termSize is the size of the terminal w is, or 80×24 when it reports none
// (0×0, as some pseudo-terminals do): mpb would otherwise draw nothing.
func termSize(w io.Writer) (width, height int) {
	if f, ok := w.(interface{ Fd() uintptr }); ok {
		if w, h, err := term.GetSize(int(f.Fd())); err == nil && w > 0 && h > 0 {
			return w, h
		}
	}
	return 80, 24
}

// termWriter is the terminal mpb draws on. Each frame is drawn by going
// back to the left margin (a ^C the terminal echoed, or keys typed, moved
// the cursor), up over the rows the last frame took, clearing below, then
// writing the lines logged since and the new frame. The rows the last frame
// took are counted at the terminal's present width: a terminal narrowed
// since rewraps each old line onto several rows, and going up one row per
// line would leave the top of the old frame on screen.
type termWriter struct {
	out  io.Writer
	size func() (width, height int)
	buf  bytes.Buffer // what the next flush writes: logged lines, then the frame
	last []int        // the visible widths of the last frame's lines
}

func (t *termWriter) Write(b []byte) (int, error)         { return t.buf.Write(b) }
func (t *termWriter) ReadFrom(r io.Reader) (int64, error) { return t.buf.ReadFrom(r) }
func (t *termWriter) IsTerminal() bool                    { return true }
func (t *termWriter) GetTermSize() (width, height int, err error) {
	w, h := t.size()
	return w, h, nil
}

// Flush draws what was written since the last flush; its last lines lines
// are the frame, which the next flush draws over.
func (t *termWriter) Flush(lines int) error {
	width, _ := t.size()
	var b bytes.Buffer
	b.WriteString("\r")
	if up := rowsAt(t.last, width); up > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", up)
	}
	b.WriteString("\x1b[J")
	written := t.buf.String()
	b.WriteString(written)
	t.buf.Reset()
	t.last = t.last[:0]
	if rows := strings.Split(strings.TrimSuffix(written, "\n"), "\n"); lines > 0 && written != "" {
		for _, r := range rows[max(len(rows)-lines, 0):] {
			t.last = append(t.last, visibleWidth(r))
		}
	}
	_, err := t.out.Write(b.Bytes())
	return err
}

// rowsAt is how many terminal rows lines of the given visible widths take
// at width columns, each wrapped onto as many rows as it needs.
func rowsAt(widths []int, width int) int {
	n := 0
	for _, w := range widths {
		if width <= 0 || w <= width {
			n++
			continue
		}
		n += (w + width - 1) / width
	}
	return n
}

// visibleWidth counts the columns a line takes: its runes, less escape
// sequences.
func visibleWidth(s string) int {
	n, esc := 0, false
	for _, r := range s {
		switch {
		case r == '\x1b':
			esc = true
		case esc:
			if r >= '@' && r <= '~' && r != '[' {
				esc = false
			}
		default:
			n++
		}
	}
	return n
}

// field is one item of a display line and its rank: when the line is too
// wide for the terminal, fields go, highest rank first, so that a narrow
// terminal shows fewer whole fields instead of a line cut mid-word.
type field struct {
	rank int // 1 is kept longest
	text string
}

// fit joins the fields that fit in width columns with " · ", in their
// order, after an indent of two spaces. It drops fields by rank; a line
// whose most important field alone is too wide is clipped.
func fit(width int, fields ...field) string {
	keep := slices.Clone(fields)
	for {
		parts := make([]string, len(keep))
		for i, f := range keep {
			parts[i] = f.text
		}
		s := "  " + strings.Join(parts, " · ")
		if width <= 0 || visibleWidth(s) <= width || len(keep) <= 1 {
			return clip(s, width)
		}
		worst := 0
		for i, f := range keep {
			if f.rank >= keep[worst].rank {
				worst = i
			}
		}
		keep = slices.Delete(keep, worst, worst+1)
	}
}

func paint(color bool, code, s string) string {
	if !color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// statesLine is the live display's line of job counts, or, during an
// outage, the one line that says so: the counts would only show jobs
// standing still, as if queued.
func statesLine(p runner.Progress, color bool, width int) string {
	if p.Outage {
		return fit(width,
			field{1, paint(color, "33", fmt.Sprintf("RunComfy not answering for %s", p.OutageFor.Round(time.Second)))},
			field{2, p.OutageWhy},
			field{3, "waiting for it"})
	}
	c := p.Counts
	count := func(code string, n int, s string) string {
		if n == 0 {
			return s
		}
		return paint(color, code, s)
	}
	failed := c[lifecycle.Failed] + c[lifecycle.Cancelled]
	queued := field{4, fmt.Sprintf("queued %d", c[lifecycle.Queued]+c[lifecycle.Submitting])}
	if p.DeepestQueue > 0 {
		queued.text += fmt.Sprintf(" (deepest #%d)", p.DeepestQueue)
	}
	fields := []field{
		queued,
		{3, fmt.Sprintf("running %d", c[lifecycle.Running])},
		{1, count("32", c[lifecycle.Done], fmt.Sprintf("done %d", c[lifecycle.Done]))},
		{2, count("31", failed, fmt.Sprintf("failed %d", failed))},
		{5, count("33", c[lifecycle.Unknown], fmt.Sprintf("unknown %d", c[lifecycle.Unknown]))},
		{6, fmt.Sprintf("pending %d", c[lifecycle.Pending])},
	}
	if n := c[lifecycle.Completed]; n > 0 {
		fields = append(fields, field{7, fmt.Sprintf("downloading %d", n)})
	}
	return fit(width, fields...)
}

// moneyLine is the live display's line of throughput, ETA and cost.
func moneyLine(p runner.Progress, width int) string {
	fields := []field{{5, fmt.Sprintf("%.2f jobs/s", p.Rate())}}
	if eta, ok := p.ETA(); ok {
		fields = append(fields, field{4, "ETA " + eta.Round(time.Second).String()})
	} else {
		fields = append(fields, field{4, "ETA —"})
	}
	fields = append(fields, field{1, "spent " + usd(p.SpentUSD)})
	if p.Priced {
		est := "est. total " + usd(p.EstimatedUSD())
		if p.Unpriced > 0 {
			est += fmt.Sprintf(" (+%d unpriced)", p.Unpriced)
		}
		fields = append(fields, field{2, est})
	}
	if p.MaxCostUSD > 0 {
		fields = append(fields, field{3, "cap " + usd(p.MaxCostUSD)})
	}
	fields = append(fields, field{6, fmt.Sprintf("submitted %d", p.Submitted)})
	return fit(width, fields...)
}

// warningLine is the live display's line for the warning that came again
// most recently, with how many times it was held back; "" when none was.
func warningLine(f *foldWarnings, color bool, width int) string {
	msg, n := f.repeats()
	if n == 0 {
		return ""
	}
	// The count first: at a narrow width the end of the message goes.
	return fit(width, field{1, fmt.Sprintf("%s, %d more times: %s", paint(color, "33", "warning"), n, msg)})
}

// foldWarnings is a log handler that, while on (a live display is up),
// lets the first warning of each message through and holds back the ones
// that repeat it, whatever their attributes: a burst of the same warning
// (a 429 storm logs "rate limited" for every call) would scroll the
// screen away. The display shows the last repeated one with its count.
// Errors, and everything while off, go through.
type foldWarnings struct {
	next       slog.Handler
	*foldState // shared with the handlers WithAttrs and WithGroup make
}

type foldState struct {
	on    atomic.Bool
	mu    sync.Mutex
	seen  map[string]int // message -> repeats held back
	last  string         // the message held back most recently
	total int            // repeats of last
}

func newFoldWarnings(next slog.Handler) *foldWarnings {
	return &foldWarnings{next: next, foldState: &foldState{seen: map[string]int{}}}
}

func (f *foldWarnings) Enabled(ctx context.Context, l slog.Level) bool {
	return f.next.Enabled(ctx, l)
}

func (f *foldWarnings) Handle(ctx context.Context, r slog.Record) error {
	if f.on.Load() && r.Level == slog.LevelWarn {
		s := f.foldState
		s.mu.Lock()
		n, seen := s.seen[r.Message]
		if seen {
			s.seen[r.Message] = n + 1
			s.last, s.total = r.Message, n+1
		} else {
			s.seen[r.Message] = 0
		}
		s.mu.Unlock()
		if seen {
			return nil
		}
	}
	return f.next.Handle(ctx, r)
}

func (f *foldWarnings) WithAttrs(attrs []slog.Attr) slog.Handler {
	return f.derive(f.next.WithAttrs(attrs))
}

func (f *foldWarnings) WithGroup(name string) slog.Handler { return f.derive(f.next.WithGroup(name)) }

func (f *foldWarnings) derive(next slog.Handler) slog.Handler {
	return &foldWarnings{next: next, foldState: f.foldState}
}

// repeats is the warning held back most recently and how many times it was.
func (f *foldWarnings) repeats() (msg string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.total
}

// clip keeps a line within the terminal's width: a wrapped line would
// break the in-place redraw. It counts runes, skipping colour codes.
func clip(s string, width int) string {
	if width <= 0 {
		return s
	}
	var b strings.Builder
	n, esc := 0, false
	for _, r := range s {
		switch {
		case r == '\x1b':
			esc = true
		case esc:
			if r == 'm' {
				esc = false
			}
		default:
			if n >= width {
				if strings.Contains(s, "\x1b[") {
					b.WriteString("\x1b[0m")
				}
				return b.String()
			}
			n++
		}
		b.WriteRune(r)
	}
	return b.String()
}

// atRunComfy says how many jobs are still at RunComfy and how they stand,
// queued and running told apart as the ledger has them (a queued job is
// not running, and is not billed yet).
func atRunComfy(c map[lifecycle.State]int) string {
	var parts []string
	for _, s := range []struct {
		st   lifecycle.State
		name string
	}{{lifecycle.Queued, "queued"}, {lifecycle.Running, "running"}, {lifecycle.Submitting, "mid-submission"}} {
		if n := c[s.st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s.name))
		}
	}
	n := lifecycle.Count(c, lifecycle.State.Outstanding)
	jobs := "jobs"
	if n == 1 {
		jobs = "job"
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d %s still at RunComfy", n, jobs)
	}
	return fmt.Sprintf("%d %s still at RunComfy (%s)", n, jobs, strings.Join(parts, ", "))
}
