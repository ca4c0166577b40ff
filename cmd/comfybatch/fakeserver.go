package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"comfybatch/runcomfy/runcomfytest"
)

func (a *app) fakeServerCommand() *cobra.Command {
	var addr string
	cfg := fakeConfig()
	cfg.Token = ""
	cmd := &cobra.Command{
		Use:   "fake-server",
		Short: "Serve the simulated RunComfy API, with fault injection, for trying things out",
		Long: `fake-server serves the same simulated Model API that --fake runs in-process,
on a loopback address, until interrupted. Point a run at it with --api-base and
any token (or the one given with --token).`,
		Example: "  comfybatch fake-server --addr 127.0.0.1:8189 --rate-429 0.2\n  RUNCOMFY_TOKEN=local-test-token comfybatch run jobs.yaml --api-base http://127.0.0.1:8189",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.fakeServer(cmd.Context(), addr, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8189", "address to listen on")
	f.StringVar(&cfg.Token, "token", "", "require this bearer token (default: accept any)")
	f.DurationVar(&cfg.QueueTime, "queue-time", cfg.QueueTime, "time each job waits in the queue")
	f.DurationVar(&cfg.RunTime, "run-time", cfg.RunTime, "time each job runs")
	f.Float64Var(&cfg.Jitter, "jitter", cfg.Jitter, "± fraction applied to queue and run times")
	f.Float64Var(&cfg.FailureRate, "failure-rate", 0, "share of jobs that finish without output")
	f.Float64Var(&cfg.Rate429, "rate-429", 0, "share of API calls answered 429")
	f.Float64Var(&cfg.RetryAfterShare, "retry-after-share", 0.5, "share of 429s that carry Retry-After")
	f.Float64Var(&cfg.Rate5xx, "rate-5xx", 0, "share of status and result calls answered 5xx")
	f.Float64Var(&cfg.DropSubmitRate, "drop-rate", 0, "share of submissions whose connection is cut after the job was created")
	f.Float64Var(&cfg.TruncateRate, "truncate-rate", 0, "share of downloads cut short")
	f.Float64Var(&cfg.ExpireRate, "expire-rate", 0, "share of jobs whose first output URL has expired")
	f.IntVar(&cfg.MaxRunning, "max-running", cfg.MaxRunning, "jobs the simulated account runs at once; the rest queue (0 = no limit)")
	f.DurationVar(&cfg.FileDelay, "file-delay", 0, "how late each output file's body comes (a slow download)")
	f.Float64Var(&cfg.CostUSD, "cost", cfg.CostUSD, "cost in USD each finished job reports")
	f.IntVar(&cfg.ResultBodyPad, "result-pad", 0, "pad every result answer with an ignored field of this many bytes (a large answer)")
	f.Int64Var(&cfg.Seed, "seed", 1, "random seed")
	return cmd
}

func (a *app) fakeServer(ctx context.Context, addr string, cfg runcomfytest.Config) error {
	if a.jsonOut {
		return usagef("fake-server prints no data: --json does not apply")
	}
	for _, r := range []struct {
		flag string
		v    float64
	}{{"--jitter", cfg.Jitter}, {"--failure-rate", cfg.FailureRate}, {"--rate-429", cfg.Rate429}, {"--retry-after-share", cfg.RetryAfterShare},
		{"--rate-5xx", cfg.Rate5xx}, {"--drop-rate", cfg.DropSubmitRate}, {"--truncate-rate", cfg.TruncateRate}, {"--expire-rate", cfg.ExpireRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return usagef("%s %v: want a share from 0 to 1", r.flag, r.v)
		}
	}
	if cfg.MaxRunning < 0 || cfg.FileDelay < 0 || cfg.QueueTime < 0 || cfg.RunTime < 0 || !(cfg.CostUSD >= 0) {
		return usagef("fake-server: --max-running, --file-delay, --queue-time, --run-time and --cost must not be negative")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return usagef("fake-server: %v", err)
	}
	srv := &http.Server{Handler: runcomfytest.New(cfg), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(a.stderr, "serving the simulated RunComfy API on http://%s (Ctrl-C to stop)\n", l.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
}
