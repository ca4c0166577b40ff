package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"comfybatch/view"
)

// defaultViewAddr is where the page is served unless --addr says otherwise.
const defaultViewAddr = "127.0.0.1:8765"

func (a *app) viewCommand() *cobra.Command {
	var addr string
	var open bool
	cmd := &cobra.Command{
		Use:   "view MANIFEST [--addr HOST:PORT] [--open]",
		Short: "Serve a local web page to watch and review the jobs' outputs",
		Long: `View serves a web page over the manifest's ledger and output folder: one
card per job with its clip, prompt, the inputs that vary, state, cost and
times; filters, sorting and details; accept and reject by click or by
keyboard. It reads the ledger without locking it, so it runs beside a run
and shows new results within about two seconds; reviews go to the review
journal (see comfybatch review). It needs no token.

It listens on 127.0.0.1:8765 unless --addr says otherwise (:0 picks a free
port), and prints "serving http://HOST:PORT/" on stderr first. Bound to
anything but loopback, it requires a random key in the URL, which it
prints. It serves only files inside the output folder.`,
		Example: "  comfybatch view jobs.yaml --open\n  comfybatch view jobs.yaml --addr 0.0.0.0:8765",
		Args:    manifestArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.view(cmd.Context(), args[0], addr, open)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", defaultViewAddr, "address to listen on, HOST:PORT (:0 picks a free port on loopback)")
	cmd.Flags().BoolVar(&open, "open", false, "open the page in the default browser")
	return cmd
}

func (a *app) view(ctx context.Context, manifestPath, addr string, open bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("--addr %q: want HOST:PORT, e.g. 127.0.0.1:8765 or :0", addr)
	}
	if host == "" {
		host = "127.0.0.1" // ":0" means a free port on loopback, not every interface
	}
	var key string
	if !isLoopback(host) {
		b := make([]byte, 16)
		rand.Read(b)
		key = hex.EncodeToString(b)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return usagef("view: listen on %s: %v", addr, err)
	}
	srv := view.New(view.Config{
		Ledger: a.ledgerPath(manifestPath),
		OutDir: a.resultsOutDir(manifestPath),
		Title:  filepath.Base(manifestPath),
		Key:    key,
	})
	defer srv.Close()
	// The host as asked (0.0.0.0, a name), with the port the system gave.
	_, bound, _ := net.SplitHostPort(ln.Addr().String())
	url := "http://" + net.JoinHostPort(host, bound) + "/"
	if key != "" {
		url += "?key=" + key
	}
	fmt.Fprintf(a.stderr, "serving %s\n", url)
	if key != "" {
		fmt.Fprintln(a.stderr, "listening beyond loopback: the page answers only with the key above")
	}
	if open {
		openBrowser(url)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openBrowser asks the desktop to open url; a failure is left alone (the
// address is printed).
func openBrowser(url string) {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	if c := exec.Command(name, url); c.Start() == nil {
		go c.Wait()
	}
}
