// Command comfybatch runs many RunComfy generation jobs from one YAML
// manifest, with a ledger that makes every run resumable. This package holds
// the command line only: flags, wiring and exit codes; the work is in
// runner, manifest, store and runcomfy.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := interruptContext(os.Stderr)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// interruptContext is cancelled by the first SIGINT or SIGTERM, which asks
// the run to stop gracefully; a second signal exits at once. The first says
// nothing here: the command that is stopping says so through its logger,
// which a live display does not draw over.
func interruptContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				cancel()
				continue
			}
			fmt.Fprintln(stderr, "second signal: exiting now; jobs mid-submission will be reported unknown by the next run")
			os.Exit(exitInterrupted)
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}
