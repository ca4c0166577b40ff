package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"comfybatch/manifest"
	"comfybatch/runner"
	"comfybatch/store"
)

// Exit codes (SPEC §2), decided in exitCode and nowhere else.
const (
	exitOK          = 0
	exitIncomplete  = 1
	exitUsage       = 2
	exitLocked      = 3
	exitInterrupted = 130
)

// usageError marks a mistake on the command line or in configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// incompleteError is a run that ended with jobs not done.
type incompleteError struct{ msg string }

func (e incompleteError) Error() string { return e.msg }

// exitCode maps an error to the process's exit code.
func exitCode(err error) int {
	var (
		me  manifest.Errors
		ue  usageError
		ae  *runner.AccountError
		inc incompleteError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, store.ErrLocked):
		return exitLocked
	case errors.Is(err, runner.ErrInterrupted):
		return exitInterrupted
	case errors.As(err, &me), errors.As(err, &ue), errors.As(err, &ae), errors.Is(err, store.ErrNotLedger),
		errors.Is(err, store.ErrIncomplete), errors.Is(err, store.ErrCorrupt), errors.Is(err, store.ErrDuplicateRequest):
		return exitUsage
	case errors.As(err, &inc):
		return exitIncomplete
	default:
		return exitIncomplete
	}
}

// app is one invocation: its streams and environment, passed in so tests can
// run the whole command line in-process.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// work ends at a second signal; the command's own context (the intake)
	// ends at the first. See stages.
	work context.Context

	// common flags
	apiBase   string
	tokenFile string
	fake      bool
	ledger    string
	out       string
	logFormat string
	verbose   bool
	quiet     bool
	jsonOut   bool

	// uploadInputs is set by run --upload: local input files go to the
	// user's bucket, so the inline body limit does not apply to them.
	uploadInputs bool
}

// Main runs the command line with nothing on stdin; see MainIO.
func Main(signals <-chan os.Signal, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return MainIO(signals, args, strings.NewReader(""), stdout, stderr, getenv)
}

// MainIO runs the command line and returns the exit code. signals delivers
// SIGINT, SIGTERM and SIGHUP (nil: never); see stages for what they do.
// stdin is read only for a manifest given as "-", and, on a terminal, for
// the answer to run's spending question.
func MainIO(signals <-chan os.Signal, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	intake, work, stop := stages(signals, stderr)
	defer stop()
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, work: work}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(intake)
	if err != nil {
		var inc incompleteError
		switch {
		case errors.Is(err, runner.ErrInterrupted), errors.As(err, &inc):
			// already reported
		default:
			fmt.Fprintln(stderr, "error:", err)
		}
	}
	return exitCode(err)
}

// stages turns signals into the two-stage stop every command shares. The
// first signal ends the intake: a run submits nothing more, stops polling
// and downloading, and lets each POST already on the wire finish and record
// its request id. The second ends the work too: those POSTs are abandoned
// (the next run reports them unknown) and the command returns at once. The
// first says nothing here: the command that is stopping says so through its
// logger, which a live display does not draw over.
func stages(signals <-chan os.Signal, stderr io.Writer) (intake, work context.Context, stop func()) {
	work, stopWork := context.WithCancel(context.Background())
	intake, stopIntake := context.WithCancel(work)
	done := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-done:
				return
			case _, ok := <-signals:
				if !ok {
					return
				}
				if n++; n == 1 {
					stopIntake()
					continue
				}
				fmt.Fprintln(stderr, "second signal: stopping now; jobs mid-submission will be reported unknown by the next run")
				stopWork()
				return
			}
		}
	}()
	return intake, work, func() { close(done); stopIntake(); stopWork() }
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "comfybatch",
		Short:         "Run many RunComfy generation jobs from one manifest, resumably",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
		// The root runs only when no command matched: see unknownCommand.
		Args: cobra.ArbitraryArgs,
		RunE: unknownCommand,
	}
	root.SetFlagErrorFunc(flagError)
	// --json is honoured by every command that prints data and refused by
	// the others, never ignored: a script that asked for JSON must not get
	// text it then fails to parse, or nothing, without being told. (The
	// shell's completion requests do not come through here.)
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		// The root with arguments is a mistyped command: saying so, and
		// what was meant, comes first.
		if cmd == root && len(args) > 0 {
			return nil
		}
		if a.jsonOut && !printsJSON[cmd.CommandPath()] {
			return usagef("%s has no data to print as JSON: drop --json", cmd.CommandPath())
		}
		return nil
	}
	root.SetHelpCommand(helpCommand())
	pf := root.PersistentFlags()
	pf.StringVar(&a.apiBase, "api-base", "", "RunComfy API base URL (env RUNCOMFY_API_BASE; default "+defaultBase+")")
	pf.StringVar(&a.tokenFile, "token-file", "", "read the API token from this file")
	pf.BoolVar(&a.fake, "fake", false, "use the built-in simulated API: no token, no network")
	pf.StringVar(&a.ledger, "ledger", "", "ledger file (default <manifest dir>/<manifest stem>.ledger.db)")
	pf.StringVar(&a.out, "out", "", "output folder, or bucket URL s3://, gs://, azblob:// (default manifest output.dir, else <manifest dir>/<stem>-out)")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "more detail")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "only warnings and errors on stderr")
	pf.BoolVar(&a.jsonOut, "json", false, "machine-readable output")

	root.AddCommand(a.runCommand(), a.planCommand(), a.validateCommand(), a.statusCommand(), a.resultsCommand(), a.cancelCommand(), a.fakeServerCommand(), a.modelsCommand(), a.initCommand(), a.completionCommand(), a.reviewCommand(), a.viewCommand())
	for _, c := range root.Commands() {
		if strings.Contains(c.Use, "MANIFEST") && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = completeManifest
		}
		if strings.Contains(c.Use, "MANIFEST") && c.Name() != "validate" && c.Name() != "plan" {
			c.Args = noStdin(c.Args)
		}
	}
	return root
}

// noStdin refuses "-" for a command whose manifest must be a file: its
// ledger and outputs are named after the manifest, found again by every
// later command, and a rerun must read the same jobs.
func noStdin(args cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) == 1 && a[0] == stdinManifest {
			return usagef("%s needs the manifest in a file, not on stdin (-): its ledger is found by the manifest's path, run after run; save it to a file first (validate and plan read -)", cmd.Name())
		}
		if args == nil {
			return nil
		}
		return args(cmd, a)
	}
}

// printsJSON are the commands that honour --json.
var printsJSON = map[string]bool{
	"comfybatch run": true, "comfybatch plan": true, "comfybatch validate": true,
	"comfybatch status": true, "comfybatch results": true, "comfybatch cancel": true,
	"comfybatch models": true, "comfybatch models show": true,
}

// logger writes logs to stderr in the chosen format.
func (a *app) logger() (*slog.Logger, error) { return a.loggerTo(a.stderr) }

// paths works out the ledger and output locations of a manifest.
func (a *app) ledgerPath(manifestPath string) string {
	if a.ledger != "" {
		return a.ledger
	}
	dir, stem := manifestStem(manifestPath)
	return filepath.Join(dir, stem+".ledger.db")
}

func (a *app) outDir(m *manifest.Manifest, manifestPath string) string {
	switch {
	case a.out != "":
		return a.out
	case m != nil && m.OutputDir != "":
		return m.OutputDir
	}
	dir, stem := manifestStem(manifestPath)
	return filepath.Join(dir, stem+"-out")
}

func manifestStem(p string) (dir, stem string) {
	base := filepath.Base(p)
	return filepath.Dir(p), strings.TrimSuffix(base, filepath.Ext(base))
}

// token finds the API token: --token-file, else the environment.
func (a *app) token() (string, error) {
	t, from, err := a.findToken()
	if err != nil || t == "" {
		return t, err
	}
	// Every answer is scrubbed of the token before anything of it is kept
	// or shown; a token of a few characters would be found inside words
	// and URLs and garble every answer (with RUNCOMFY_TOKEN=x, a fake
	// server's file URLs lost their x's). RunComfy's tokens are far longer.
	if len(t) < minTokenLen {
		return "", usagef("the API token from %s is %d characters long: too short to be a RunComfy token (at least %d); for a local fake-server any longer placeholder works, e.g. RUNCOMFY_TOKEN=local-test-token", from, len(t), minTokenLen)
	}
	return t, nil
}

// minTokenLen is the shortest token accepted.
const minTokenLen = 8

// findToken reads the token: --token-file, else the environment. from
// names where it came from, for messages.
func (a *app) findToken() (token, from string, err error) {
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", "", usagef("--token-file: %v", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", "", usagef("--token-file %s is empty", a.tokenFile)
		}
		return t, "--token-file " + a.tokenFile, nil
	}
	for _, name := range []string{"RUNCOMFY_TOKEN", "RUNCOMFY_API_TOKEN", "YOUR_API_TOKEN"} {
		if t := strings.TrimSpace(a.getenv(name)); t != "" {
			return t, name, nil
		}
	}
	return "", "", nil
}

func (a *app) baseURL() string {
	if a.apiBase != "" {
		return a.apiBase
	}
	if b := a.getenv("RUNCOMFY_API_BASE"); b != "" {
		return b
	}
	return defaultBase
}

// versionString is the module's version and, when the binary was built from
// a checkout, the commit it was built from (and whether it had changes).
func versionString() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		v = mv
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" {
		v += fmt.Sprintf(" (%.12s%s)", rev, modified)
	}
	return v
}
