package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"comfybatch/manifest"
	"comfybatch/media"
	"comfybatch/outstore"
	"comfybatch/runner"
)

type validateFlags struct {
	upload      string // --upload URL: as run --upload, local inputs not inline
	schemas     []string
	media       bool
	concurrency int
	rps         float64
}

func (a *app) validateCommand() *cobra.Command {
	var o validateFlags
	cmd := &cobra.Command{
		Use:   "validate MANIFEST",
		Short: "Check the manifest and every job's input against its model's schema; --media checks the files too",
		Long: `Validate reads the manifest and the files it includes and checks every job's
input against its model's input schema and RunComfy's own rules, reporting
every problem with its file, line and column. With --media it also fetches
each distinct image and audio URL once and checks its format, size,
dimensions and duration. It needs no token and never writes the ledger: a
model the built-in schemas do not know is checked against the schema the
ledger kept from RunComfy's catalog, or, with a token or --fake, read from
the catalog.
Exit status 0 when everything is valid, 2 when anything is not.`,
		Example: "  comfybatch validate jobs.yaml\n  comfybatch validate jobs.yaml --media -j 8",
		Args:    manifestArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.validate(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.media, "media", false, "fetch each distinct image and audio URL once and check the file")
	f.StringVar(&o.upload, "upload", "", "validate as run --upload `URL` would: local input files uploaded, not inline (no body limit); the bucket is not touched")
	f.IntVarP(&o.concurrency, "concurrency", "j", media.DefaultConcurrency, "with --media: most files fetched at once")
	f.Float64Var(&o.rps, "rps", 10, "with --media: most files fetched per second")
	addSchemaFlag(f, &o.schemas)
	return cmd
}

// validateJSON is what `validate --json` prints: one object. Fields may be
// added, never renamed.
type validateJSON struct {
	Manifest string      `json:"manifest"`
	Jobs     int         `json:"jobs"`  // jobs in the manifest; 0 when it could not be read
	Valid    bool        `json:"valid"` // no errors
	Media    *int        `json:"media"` // distinct files checked with --media, else null
	Errors   []errorJSON `json:"errors"`
}

type errorJSON struct {
	File    string `json:"file"`
	Line    int    `json:"line"` // 0 when unknown
	Col     int    `json:"col"`  // 0 when unknown
	Job     string `json:"job"`  // job id, "#N" for a job without a usable id, "" for the manifest itself
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (a *app) validate(ctx context.Context, path string, o validateFlags) error {
	if o.upload != "" && !outstore.IsURL(o.upload) {
		return usagef("--upload %q: want a bucket URL, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or azblob://CONTAINER/PREFIX", o.upload)
	}
	a.uploadInputs = o.upload != ""
	if o.media && o.concurrency < 1 {
		return usagef("-j/--concurrency must be at least 1")
	}
	if o.media && !(o.rps > 0) {
		return usagef("--rps must be a positive number")
	}
	mode := catalogMode{}
	if path != stdinManifest {
		mode.ledger = a.ledgerPath(path)
	}
	m, _, _, err := a.load(ctx, path, o.schemas, mode)
	if path == stdinManifest {
		path = stdinName
	}
	var checked *int
	if m != nil && o.media {
		// Third-party hosts: a plain client, never the API client with its token.
		c := &media.Checker{
			HTTP:        &http.Client{Timeout: media.DefaultTimeout},
			Concurrency: o.concurrency,
			Limiter:     rate.NewLimiter(rate.Limit(o.rps), 1),
		}
		n := len(runner.MediaUses(m))
		checked = &n
		merr := runner.ValidateMedia(ctx, m, c)
		if ctx.Err() != nil {
			return runner.ErrInterrupted
		}
		var more manifest.Errors
		if errors.As(merr, &more) {
			err = merge(path, err, more)
		} else if merr != nil {
			return merr
		}
	}
	if a.jsonOut {
		if jerr := a.printValidation(path, m, checked, err); jerr != nil {
			return jerr
		}
		return err
	}
	if err == nil && !a.quiet {
		msg := fmt.Sprintf("%s: %s, all valid", path, jobs(len(m.Jobs)))
		if checked != nil {
			msg += fmt.Sprintf("; %d media files checked", *checked)
		}
		fmt.Fprintln(a.stdout, msg)
	}
	return err
}

func (a *app) printValidation(path string, m *manifest.Manifest, checked *int, err error) error {
	out := validateJSON{Manifest: path, Valid: err == nil, Media: checked, Errors: []errorJSON{}}
	if m != nil {
		out.Jobs = len(m.Jobs)
	}
	var errs manifest.Errors
	if errors.As(err, &errs) {
		runner.SortErrors(errs)
		for _, e := range errs {
			out.Errors = append(out.Errors, errorJSON{File: e.File, Line: e.Line, Col: e.Col, Job: e.JobID, Field: e.Field, Message: e.Msg})
		}
	} else if err != nil {
		return err // not a report about the manifest: let it be said as an error
	}
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // <stdin> as written
	return enc.Encode(out)
}
