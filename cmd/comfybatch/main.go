// Command comfybatch runs many RunComfy generation jobs from one YAML
// manifest, with a ledger that makes every run resumable. This package holds
// the command line only: flags, wiring and exit codes; the work is in
// runner, manifest, store, runcomfy and lifecycle.
package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

// hardStop is how long the process waits, after a second signal, for the
// command to return before it exits regardless: a stuck disk must not make
// a user's second Ctrl-C a no-op.
const hardStop = 5 * time.Second

func main() {
	sigs := make(chan os.Signal, 3)
	// SIGHUP too: a closed terminal, ssh session or tmux pane stops a run
	// the graceful way, not at once.
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	// A closed stdout or stderr (`run ... 2>&1 | head`) must not kill a
	// run with SIGPIPE at its next log line: with SIGPIPE notified, a write
	// to a broken pipe fails with EPIPE instead, and the run goes on.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	relay := make(chan os.Signal, 3)
	go func() {
		n := 0
		for s := range sigs {
			relay <- s
			if n++; n == 2 {
				time.AfterFunc(hardStop, func() { os.Exit(exitInterrupted) })
			}
		}
	}()
	os.Exit(MainIO(relay, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
