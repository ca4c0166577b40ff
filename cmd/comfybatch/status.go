package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"comfybatch/store"
)

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status MANIFEST",
		Short: "Show how many jobs are in each state (per job with -v)",
		Long: `Status reads the manifest's ledger without locking it, so it works from
another terminal while a run is going on. It needs no token.`,
		Example: "  comfybatch status jobs.yaml\n  comfybatch status jobs.yaml -v --json",
		Args:    manifestArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.status(args[0])
		},
	}
}

type statusJSON struct {
	Ledger   string         `json:"ledger"`
	Counts   map[string]int `json:"counts"`
	SpentUSD float64        `json:"spent_usd"`
	Jobs     []jobJSON      `json:"jobs,omitempty"`
}

type jobJSON struct {
	ID           string        `json:"id"`
	Model        string        `json:"model"`
	State        store.State   `json:"state"`
	RemoteStatus string        `json:"remote_status"`
	RequestID    string        `json:"request_id"`
	Attempts     int           `json:"attempts"`
	CostUSD      *float64      `json:"cost_usd"`
	Error        string        `json:"error"`
	Files        []store.File  `json:"files"`
	Events       []store.Event `json:"events"`
}

func (a *app) status(manifestPath string) error {
	path := a.ledgerPath(manifestPath)
	out := statusJSON{Ledger: path, Counts: map[string]int{}}
	for _, st := range store.States {
		out.Counts[string(st)] = 0
	}
	st, err := store.Open(path, store.Options{ReadOnly: true})
	if errors.Is(err, store.ErrNoLedger) {
		if !a.jsonOut {
			fmt.Fprintf(a.stderr, "no ledger at %s yet: nothing has run for this manifest\n", path)
		}
		return a.printStatus(out)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	counts, err := st.Counts()
	if err != nil {
		return err
	}
	for s, n := range counts {
		out.Counts[string(s)] = n
	}
	if out.SpentUSD, err = st.Spent(); err != nil {
		return err
	}
	if a.verbose {
		out.Jobs = []jobJSON{}
		err = st.EachJob(func(j store.Job) error {
			jj := jobJSON{ID: j.ID, Model: j.Model, State: j.State, RemoteStatus: j.RemoteStatus, RequestID: j.RequestID,
				Attempts: j.Attempts, CostUSD: j.CostUSD, Error: j.Error, Files: []store.File{}}
			var err error
			if files, err := st.Files(j.ID); err == nil && files != nil {
				jj.Files = files
			}
			if jj.Events, err = st.Events(j.ID); err != nil {
				return err
			}
			out.Jobs = append(out.Jobs, jj)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return a.printStatus(out)
}

func (a *app) printStatus(s statusJSON) error {
	if a.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ledger\t%s\n", s.Ledger)
	total := 0
	for _, st := range store.States {
		total += s.Counts[string(st)]
	}
	for _, st := range store.States {
		if n := s.Counts[string(st)]; n > 0 || st == store.Done {
			fmt.Fprintf(tw, "%s\t%d\n", st, n)
		}
	}
	fmt.Fprintf(tw, "total\t%d\n", total)
	fmt.Fprintf(tw, "spent\t$%.2f\n", s.SpentUSD)
	tw.Flush()
	for _, j := range s.Jobs {
		fmt.Fprintf(a.stdout, "\n%s  %s", j.ID, j.State)
		if j.RemoteStatus != "" {
			fmt.Fprintf(a.stdout, " (remote %s)", j.RemoteStatus)
		}
		if j.RequestID != "" {
			fmt.Fprintf(a.stdout, "  request %s", j.RequestID)
		}
		fmt.Fprintf(a.stdout, "  attempts %d", j.Attempts)
		if j.CostUSD != nil {
			fmt.Fprintf(a.stdout, "  $%.2f", *j.CostUSD)
		}
		fmt.Fprintln(a.stdout)
		if j.Error != "" {
			fmt.Fprintf(a.stdout, "  error: %s\n", j.Error)
		}
		for _, f := range j.Files {
			fmt.Fprintf(a.stdout, "  file %s  %d bytes  sha256 %s\n", f.Path, f.Bytes, f.SHA256)
		}
		for _, e := range j.Events {
			fmt.Fprintf(a.stdout, "  %s  %s → %s", e.At, orDash(string(e.From)), e.To)
			if e.Detail != "" {
				fmt.Fprintf(a.stdout, "  %s", e.Detail)
			}
			fmt.Fprintln(a.stdout)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
