package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/cupwriter"
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

func (a *app) newDisplay(sink *logSink, log *slog.Logger, plain time.Duration) *display {
	switch {
	case a.quiet:
		return &display{every: -1, update: func(runner.Progress) {}, stop: func() {}}
	case a.logFormat == "text" && a.isTerminal(a.stderr):
		return a.liveDisplay(sink)
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
// in place by mpb: the jobs by state, then throughput, ETA and money.
func (a *app) liveDisplay(sink *logSink) *display {
	var last atomic.Pointer[runner.Progress]
	color := a.getenv("NO_COLOR") == ""
	p := mpb.New(mpb.WithConsoleWriter(sizedTerminal{cupwriter.New(a.stderr, true)}),
		mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	line := func(render func(runner.Progress) string) mpb.BarFiller {
		return mpb.BarFillerFunc(func(w io.Writer, st decor.Statistics) error {
			s := ""
			if lp := last.Load(); lp != nil {
				s = render(*lp)
			}
			_, err := io.WriteString(w, clip(s, st.AvailableWidth)+"\n")
			return err
		})
	}
	var bar *mpb.Bar // made at the first snapshot, which knows the total
	update := func(pr runner.Progress) {
		last.Store(&pr)
		if bar == nil { // the runner calls update from one goroutine at a time
			bar = p.New(int64(pr.Total), mpb.BarStyle().Lbound("[").Rbound("]"),
				mpb.PrependDecorators(decor.Name("comfybatch ")),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
					if lp := last.Load(); lp != nil {
						return fmt.Sprintf(" %d/%d settled", lp.Settled, lp.Total)
					}
					return ""
				})),
				mpb.BarBtmExtender(line(func(p runner.Progress) string { return statesLine(p, color) }), line(moneyLine)))
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
		sink.set(a.stderr)
	}
	return &display{every: liveEvery, update: update, stop: stop}
}

// sizedTerminal is the terminal mpb draws on, with a usable size when the
// terminal reports none (0×0, as some pseudo-terminals do): mpb would
// otherwise draw nothing at all.
type sizedTerminal struct{ *cupwriter.Writer }

func (t sizedTerminal) GetTermSize() (width, height int, err error) {
	w, h, err := t.Writer.GetTermSize()
	if err != nil || w <= 0 || h <= 0 {
		return 80, 24, nil
	}
	return w, h, nil
}

// statesLine is the live display's line of job counts.
func statesLine(p runner.Progress, color bool) string {
	c := p.Counts
	paint := func(code string, n int, s string) string {
		if !color || n == 0 {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	queued := fmt.Sprintf("queued %d", c[lifecycle.Queued]+c[lifecycle.Submitting])
	if p.DeepestQueue > 0 {
		queued += fmt.Sprintf(" (deepest #%d)", p.DeepestQueue)
	}
	parts := []string{
		queued,
		fmt.Sprintf("running %d", c[lifecycle.Running]),
		paint("32", c[lifecycle.Done], fmt.Sprintf("done %d", c[lifecycle.Done])),
		paint("31", c[lifecycle.Failed]+c[lifecycle.Cancelled], fmt.Sprintf("failed %d", c[lifecycle.Failed]+c[lifecycle.Cancelled])),
		paint("33", c[lifecycle.Unknown], fmt.Sprintf("unknown %d", c[lifecycle.Unknown])),
		fmt.Sprintf("pending %d", c[lifecycle.Pending]),
	}
	if n := c[lifecycle.Completed]; n > 0 {
		parts = append(parts, fmt.Sprintf("downloading %d", n))
	}
	return "  " + strings.Join(parts, " · ")
}

// moneyLine is the live display's line of throughput, ETA and cost.
func moneyLine(p runner.Progress) string {
	parts := []string{fmt.Sprintf("%.2f jobs/s", p.Rate())}
	if eta, ok := p.ETA(); ok {
		parts = append(parts, "ETA "+eta.Round(time.Second).String())
	} else {
		parts = append(parts, "ETA —")
	}
	parts = append(parts, "spent "+usd(p.SpentUSD))
	if p.Priced {
		est := "est. total " + usd(p.EstimatedUSD())
		if p.Unpriced > 0 {
			est += fmt.Sprintf(" (+%d unpriced)", p.Unpriced)
		}
		parts = append(parts, est)
	}
	if p.MaxCostUSD > 0 {
		parts = append(parts, "cap "+usd(p.MaxCostUSD))
	}
	parts = append(parts, fmt.Sprintf("submitted %d", p.Submitted))
	return "  " + strings.Join(parts, " · ")
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
