package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/outstore"
	"comfybatch/store"
)

func (a *app) resultsCommand() *cobra.Command {
	var format, review string
	var only []string
	cmd := &cobra.Command{
		Use:   "results MANIFEST",
		Short: "Export the settled jobs (done, failed, cancelled, unknown) as JSON Lines or CSV",
		Long: `Results writes one record per settled job to stdout: its id, model, input,
state, request id, cost, output URLs, downloaded files with their size and
sha256, and when it was submitted and finished. Like status it reads the
ledger without locking it, needs no token and works while a run goes on.

--format jsonl (the default) writes one JSON object a line; --format csv
writes a header row, then one row a job, with the input as a JSON cell and
lists (URLs, files, hashes) separated by spaces.

--job exports only the jobs named (repeatable, comma lists, globs such as
'tub.*'); a named job that is not settled yet is left out, and said so.

Each record carries the job's review (comfybatch review, the view page):
"review" is "accepted", "rejected" or null, "review_note" its note.
--review accepted (or rejected, or none) exports only those jobs.`,
		Example: "  comfybatch results jobs.yaml > results.jsonl\n  comfybatch results jobs.yaml --format csv > results.csv\n  comfybatch results jobs.yaml | jq -r 'select(.state == \"done\") | .files[].local_path'",
		Args:    manifestArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.results(cmd.Context(), args[0], format, only, review)
		},
	}
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl or csv")
	cmd.Flags().StringArrayVar(&only, "job", nil, "export only this job (repeatable, comma lists, globs such as 'tub.*')")
	cmd.RegisterFlagCompletionFunc("job", a.completeJobIDs)
	cmd.Flags().StringVar(&review, "review", "", "export only the jobs with this review: accepted, rejected or none")
	cmd.RegisterFlagCompletionFunc("review", fixedValues("accepted", "rejected", "none"))
	cmd.ValidArgsFunction = completeManifest
	cmd.RegisterFlagCompletionFunc("format", fixedValues("jsonl", "csv"))
	return cmd
}

// resultJSON is one line of `results --format jsonl`. Fields may be added,
// never renamed.
type resultJSON struct {
	ID           string          `json:"id"`
	Model        string          `json:"model"`
	State        lifecycle.State `json:"state"`
	Input        json.RawMessage `json:"input"`
	RequestID    string          `json:"request_id"`
	RemoteStatus string          `json:"remote_status"`
	Attempts     int             `json:"attempts"`
	CostUSD      *float64        `json:"cost_usd"`
	Error        string          `json:"error"`
	Outputs      []string        `json:"outputs"` // output URLs (they expire)
	Files        []resultFile    `json:"files"`
	SubmittedAt  string          `json:"submitted_at"`
	FinishedAt   string          `json:"finished_at"`
	Review       *store.Verdict  `json:"review"` // null: not reviewed
	ReviewNote   string          `json:"review_note"`
}

type resultFile struct {
	Path      string `json:"path"`       // relative to the output folder, as in metadata.jsonl
	LocalPath string `json:"local_path"` // the output folder joined in
	Bytes     int64  `json:"bytes"`
	SHA256    string `json:"sha256"`
}

var csvHeader = []string{"id", "model", "state", "request_id", "remote_status", "attempts", "cost_usd", "error",
	"submitted_at", "finished_at", "input", "outputs", "files", "bytes", "sha256", "review", "review_note"}

// settledStates are the states results exports: the job needs nothing more.
func settledStates() []lifecycle.State {
	var out []lifecycle.State
	for _, st := range lifecycle.States {
		if st.Settled() {
			out = append(out, st)
		}
	}
	return out
}

func (a *app) results(ctx context.Context, manifestPath, format string, only []string, review string) error {
	if format != "jsonl" && format != "csv" {
		return usagef("--format %q: want jsonl or csv", format)
	}
	switch review {
	case "", "accepted", "rejected", "none":
	default:
		return usagef("--review %q: want accepted, rejected or none", review)
	}
	if a.jsonOut && format == "csv" {
		return usagef("--json and --format csv ask for two formats: choose one")
	}
	patterns, err := jobPatterns(only)
	if err != nil {
		return err
	}
	path := a.ledgerPath(manifestPath)
	out := a.resultsOutDir(manifestPath)
	var write func(resultJSON) error
	var flush func() error
	switch format {
	case "jsonl":
		enc := json.NewEncoder(a.stdout)
		enc.SetEscapeHTML(false) // URLs keep their & as they are
		write, flush = func(r resultJSON) error { return enc.Encode(r) }, func() error { return nil }
	case "csv":
		cw := csv.NewWriter(a.stdout)
		if err := cw.Write(csvHeader); err != nil {
			return err
		}
		write = func(r resultJSON) error { return cw.Write(csvRow(r)) }
		flush = func() error { cw.Flush(); return cw.Error() }
	}

	st, err := store.Open(path, store.Options{ReadOnly: true})
	if errors.Is(err, store.ErrNoLedger) && len(patterns) > 0 {
		return usagef("no ledger at %s yet: nothing has run for this manifest, so job %s has no result", path, patterns[0])
	}
	if errors.Is(err, store.ErrNoLedger) {
		fmt.Fprintf(a.stderr, "no ledger at %s yet: nothing has run for this manifest (start with `comfybatch run %s`)\n", path, manifestPath)
		return flush()
	}
	if err != nil {
		return err
	}
	defer st.Close()
	var selected map[string]bool
	if len(patterns) > 0 {
		// Checked before the first record is written.
		if selected, _, err = selectJobs(patterns, func(fn func(string) error) error {
			return st.EachJobState(ctx, func(id string, _ lifecycle.State) error { return fn(id) })
		}, "ledger", fmt.Sprintf("`comfybatch status %s -v` lists every job", manifestPath)); err != nil {
			return err
		}
	}
	reviews, err := store.ReadReviews(ctx, path, st)
	if err != nil {
		return err
	}
	exported := 0
	err = st.EachJob(ctx, func(j store.Job) error {
		if selected != nil && !selected[j.ID] {
			return nil
		}
		exported++
		rv, reviewed := store.Current(reviews, j)
		switch {
		case review == "none" && reviewed,
			review != "" && review != "none" && (!reviewed || string(rv.Verdict) != review):
			return nil
		}
		files, err := st.Files(ctx, j.ID)
		if err != nil {
			return err
		}
		r := resultJSON{ID: j.ID, Model: j.Model, State: j.State, Input: j.Input, RequestID: j.RequestID,
			RemoteStatus: j.RemoteStatus, Attempts: j.Attempts, CostUSD: j.CostUSD, Error: j.Error,
			Outputs: nonNil(j.Outputs), Files: []resultFile{}, SubmittedAt: j.SubmittedAt, FinishedAt: j.FinishedAt}
		if reviewed {
			r.Review, r.ReviewNote = &rv.Verdict, rv.Note
		}
		for _, f := range files {
			r.Files = append(r.Files, resultFile{Path: f.Path, LocalPath: outstore.Join(out, f.Path), Bytes: f.Bytes, SHA256: f.SHA256})
		}
		return write(r)
	}, settledStates()...)
	if err != nil {
		return fmt.Errorf("read ledger %s: %w", path, err)
	}
	if n := len(selected) - exported; n > 0 {
		fmt.Fprintf(a.stderr, "%s of --job not settled yet, so not exported (`comfybatch status %s --job ...` shows where they are)\n", jobs(n), manifestPath)
	}
	return flush()
}

// resultsOutDir is where the files are: --out, else the manifest's
// output.dir, else the default. The manifest is only read for output.dir;
// when it cannot be read, say so and use the default.
func (a *app) resultsOutDir(manifestPath string) string {
	if a.out != "" {
		return a.out
	}
	m, err := manifest.Load(manifestPath, manifest.Options{})
	if err != nil {
		m = nil
		def := a.outDir(nil, manifestPath)
		fmt.Fprintf(a.stderr, "warning: cannot read the manifest for its output folder, so local_path assumes %s (pass --out to say where the files are): %v\n", def, firstLine(err))
	}
	return a.outDir(m, manifestPath)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// csvRow flattens a result: the input as JSON, lists joined by spaces (no
// URL or file name of ours holds one).
func csvRow(r resultJSON) []string {
	var paths, sizes, sums []string
	for _, f := range r.Files {
		paths = append(paths, f.LocalPath)
		sizes = append(sizes, strconv.FormatInt(f.Bytes, 10))
		sums = append(sums, f.SHA256)
	}
	verdict := ""
	if r.Review != nil {
		verdict = string(*r.Review)
	}
	cost := ""
	if r.CostUSD != nil {
		cost = strconv.FormatFloat(*r.CostUSD, 'f', -1, 64)
	}
	return []string{r.ID, r.Model, string(r.State), r.RequestID, r.RemoteStatus, strconv.Itoa(r.Attempts), cost, r.Error,
		r.SubmittedAt, r.FinishedAt, string(r.Input), strings.Join(r.Outputs, " "),
		strings.Join(paths, " "), strings.Join(sizes, " "), strings.Join(sums, " "), verdict, r.ReviewNote}
}
