package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"comfybatch/localfile"
	"comfybatch/manifest"
	"comfybatch/media"
	"comfybatch/runcomfy"
	"comfybatch/runner"
)

// addSchemaFlag registers --schema on a command that reads model schemas.
func addSchemaFlag(f *pflag.FlagSet, dst *[]string) {
	f.StringArrayVar(dst, "schema", nil,
		"add or override a model's input schema: MODEL=PATH, PATH a JSON Schema or RunComfy's {\"input\": ...} envelope (repeatable)")
}

// schemas builds the registry: the built-in schemas, then each --schema in
// the order given, so that a later one for the same model wins.
func schemas(args []string) (*runcomfy.Schemas, error) {
	s, err := runcomfy.BuiltinSchemas()
	if err != nil {
		return nil, fmt.Errorf("built-in schemas: %w", err) // a broken build, not the user's doing
	}
	for _, arg := range args {
		// Model ids hold slashes but never "=", so the first "=" splits.
		model, path, ok := strings.Cut(arg, "=")
		if !ok || model == "" || path == "" {
			return nil, usagef("--schema %q: want MODEL=PATH, e.g. --schema wan-ai/wan-2-6/image-to-video=schema.json", arg)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, usagef("--schema %s: cannot read %s: %v", model, path, errors.Unwrap(err))
		}
		if err := s.Add(model, data); err != nil {
			return nil, usagef("--schema %s=%s: %v", model, path, err)
		}
	}
	return s, nil
}

// stdinManifest is the manifest argument that reads the manifest from
// stdin (validate and plan); stdinName names it in reports.
const (
	stdinManifest = "-"
	stdinName     = "<stdin>"
)

// load is the one way run, plan and validate read a manifest: parsed with
// CSV cells typed by the model schemas, then every job validated against
// them. Warnings go to stderr. On validation errors it returns the manifest
// too, so that validate --media can add its own findings to the report;
// every other caller stops at the error. Model schemas come from the
// catalog too, as mode says (catalog.go); what was read of it now is
// returned for a run to keep, even with errors.
func (a *app) load(ctx context.Context, path string, schemaArgs []string, mode catalogMode) (*manifest.Manifest, *runcomfy.Schemas, *catalogRead, error) {
	read := &catalogRead{}
	s, err := schemas(schemaArgs)
	if err != nil {
		return nil, nil, read, err
	}
	given := map[string]bool{}
	for _, arg := range schemaArgs {
		model, _, _ := strings.Cut(arg, "=")
		given[model] = true
	}
	kept := keptCatalog(ctx, mode.ledger)
	addKept(a.stderr, s, given, kept)
	var m *manifest.Manifest
	opts := manifest.Options{FieldType: s.FieldType}
	var data []byte
	if path == stdinManifest {
		// Includes are read relative to the working directory then.
		var rerr error
		if data, rerr = io.ReadAll(a.stdin); rerr != nil {
			return nil, s, read, fmt.Errorf("read the manifest from stdin: %w", rerr)
		}
		path = stdinName
		m, err = manifest.Parse(path, data, opts)
	} else {
		m, err = manifest.Load(path, opts)
	}
	if m != nil && a.applyCatalog(ctx, a.stderr, s, given, m, mode, kept, read) && len(m.Includes) > 0 {
		// A schema read now types the CSV cells of its model's rows.
		if data != nil {
			m, err = manifest.Parse(path, data, opts)
		} else {
			m, err = manifest.Load(path, opts)
		}
	}
	if err != nil {
		// The jobs the manifest read cleanly are checked too, so that one
		// report holds every problem rather than the schema's coming after
		// the manifest's are fixed.
		if m != nil && len(m.Jobs) > 0 && !noModel(m) {
			if _, verr := runner.Validate(m, s); verr != nil {
				var more manifest.Errors
				errors.As(verr, &more)
				return nil, s, read, merge(path, reportOf(path, err), more)
			}
		}
		return nil, s, read, reportOf(path, err)
	}
	warnings, err := runner.Validate(m, s)
	for _, w := range warnings {
		fmt.Fprintln(a.stderr, "warning:", w)
	}
	// Local files are checked here, before anything is paid, and sent
	// inline: their data: URIs count against the body limit.
	maxBody := int64(localfile.MaxInlineBody)
	if a.uploadInputs || m.Upload != "" {
		maxBody = 0 // uploaded, not inline: no body limit
	}
	if lerr := runner.ValidateLocal(m, media.DefaultRules(), maxBody); lerr != nil {
		var more manifest.Errors
		if !errors.As(lerr, &more) {
			return nil, s, read, lerr
		}
		return m, s, read, merge(path, reportOf(path, err), more)
	}
	if err != nil {
		return m, s, read, reportOf(path, err)
	}
	return m, s, read, nil
}

// noModel reports a job without a model: the manifest's own error says why,
// and its schema checks would only repeat it.
func noModel(m *manifest.Manifest) bool {
	return slices.ContainsFunc(m.Jobs, func(j manifest.Job) bool { return j.Model == "" })
}

// problems is a manifest's error report as a person reads it: a count,
// then one problem a line, sorted by file, line and column. It unwraps to
// manifest.Errors, which sets the exit code (2).
type problems struct {
	file string
	errs manifest.Errors
}

// reportOf wraps manifest.Errors for printing; other errors pass through.
func reportOf(file string, err error) error {
	var errs manifest.Errors
	if !errors.As(err, &errs) {
		return err
	}
	return &problems{file: file, errs: errs}
}

func (p *problems) Unwrap() error { return p.errs }

func (p *problems) Error() string {
	errs := slices.Clone(p.errs)
	runner.SortErrors(errs)
	if len(errs) == 1 {
		return errs[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems:", p.file, len(errs))
	for _, f := range fold(errs) {
		b.WriteString("\n  ")
		b.WriteString(f.first.Error())
		if len(f.more) > 0 {
			fmt.Fprintf(&b, " (and the same in %d more places: %s)", len(f.more), placesOf(f.more))
		}
	}
	return b.String()
}

// foldAt is how many problems alike make one line: a mistake copied into
// thousands of jobs (a misspelt CSV column, an image every row lacks) is
// one thing to fix, and a report of thousands of lines hides the others.
const foldAt = 4

// folded is one line of a report: a problem, and the places of the others
// just like it (the same file, field and message), when they are many.
type folded struct {
	first *manifest.Error
	more  []*manifest.Error
}

// fold keeps errs in order, gathering each group of foldAt or more problems
// alike at its first.
func fold(errs manifest.Errors) []folded {
	type key struct{ file, field, msg string }
	groups := map[key][]*manifest.Error{}
	for _, e := range errs {
		k := key{e.File, e.Field, e.Msg}
		groups[k] = append(groups[k], e)
	}
	var out []folded
	for _, e := range errs {
		g := groups[key{e.File, e.Field, e.Msg}]
		switch {
		case len(g) < foldAt:
			out = append(out, folded{first: e})
		case g[0] == e:
			out = append(out, folded{first: e, more: g[1:]})
		}
	}
	return out
}

// placesOf names the first few places of folded problems.
func placesOf(errs []*manifest.Error) string {
	const shown = 3
	var parts []string
	for i, e := range errs {
		if i == shown {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("line %d", e.Line))
		if e.JobID != "" {
			parts[len(parts)-1] += " (job " + e.JobID + ")"
		}
	}
	return strings.Join(parts, ", ")
}

// merge adds more problems to a report, or starts one.
func merge(file string, err error, more manifest.Errors) error {
	if len(more) == 0 {
		return err
	}
	var p *problems
	if errors.As(err, &p) {
		return &problems{file: file, errs: slices.Concat(p.errs, more)}
	}
	return &problems{file: file, errs: more}
}
