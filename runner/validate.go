package runner

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"comfybatch/manifest"
	"comfybatch/media"
	"comfybatch/runcomfy"
	"comfybatch/suggest"
)

// Validate checks every job's merged input against its model's input schema
// and RunComfy's own rules (SPEC §4), before anything is submitted. Every
// problem is reported at once, as manifest.Errors sorted by place, each at
// the line of the offending value (or of the defaults entry or matrix value
// it came from) and naming the job. A model without a schema gets RunComfy's
// general rules only, and one warning.
func Validate(m *manifest.Manifest, s *runcomfy.Schemas) (warnings []string, err error) {
	jobs := m.Jobs
	// Validating one input costs microseconds; 100,000 of them are worth
	// spreading over the cores. Each worker takes a contiguous share and
	// the shares are joined in job order, so the report does not depend on
	// scheduling.
	workers := min(runtime.GOMAXPROCS(0), max(1, len(jobs)/256))
	found := make([][]*manifest.Error, workers)
	unlisted := make([]map[unlistedKey]*unlistedUse, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*len(jobs)/workers, (w+1)*len(jobs)/workers
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				j := &jobs[i]
				in, err := j.Values()
				if err != nil { // the manifest wrote it: a bug, not a user's mistake
					found[w] = append(found[w], &manifest.Error{Pos: j.Pos, JobID: j.ID, Field: "input", Msg: "cannot be decoded: " + err.Error()})
					continue
				}
				for _, fe := range s.Validate(j.Model, in) {
					found[w] = append(found[w], fieldError(j, fe))
				}
				for field := range in {
					if !s.Unlisted(j.Model, field) {
						continue
					}
					if unlisted[w] == nil {
						unlisted[w] = map[unlistedKey]*unlistedUse{}
					}
					k := unlistedKey{j.Model, field}
					if u := unlisted[w][k]; u != nil {
						u.jobs++
						continue
					}
					at, _ := j.FieldPos(field)
					unlisted[w][k] = &unlistedUse{jobs: 1, at: at, name: fieldName(at, runcomfy.FieldError{Field: field}, j.FromDefaults(field))}
				}
			}
		})
	}
	wg.Wait()
	warnings = unlistedWarnings(unlisted)

	unschemed := map[string]int{}
	typos := map[string]string{} // model id -> the known one it misspells, "" for none
	onDefault := 0               // jobs on the manifest's model, when it is a typo
	for i := range jobs {
		j := &jobs[i]
		if s.Has(j.Model) {
			continue
		}
		known, seen := typos[j.Model]
		if !seen {
			known, _ = ModelTypo(j.Model, s.Models())
			typos[j.Model] = known
		}
		switch {
		case known == "":
			unschemed[j.Model]++
		case j.Model == m.Model && m.ModelPos.Line > 0:
			onDefault++ // one mistake, reported once below
		default:
			found = append(found, []*manifest.Error{{Pos: j.Pos, JobID: j.ID, Field: "model", Msg: modelTypo(j.Model, known, "")}})
		}
	}
	if onDefault > 0 {
		found = append(found, []*manifest.Error{{Pos: m.ModelPos, Field: "model", Msg: modelTypo(m.Model, typos[m.Model], plural(onDefault, "job")+" on it")}})
	}
	for _, model := range slices.Sorted(maps.Keys(unschemed)) {
		warnings = append(warnings, fmt.Sprintf(
			"no input schema for %s (%s): checked only RunComfy's general rules (prompt length, seed range, https URLs), not field names, types or enums; add one with --schema %s=PATH",
			model, plural(unschemed[model], "job"), model))
	}
	if errs := collapse(slices.Concat(found...)); len(errs) > 0 {
		return warnings, errs
	}
	return warnings, nil
}

// modelTypo says that id is taken for a typo of known.
func modelTypo(id, known, jobs string) string {
	if jobs != "" {
		jobs = "; " + jobs
	}
	return fmt.Sprintf("unknown model id %q; did you mean %q? (too near a known model to be another one; if it is, give its schema: --schema %s=PATH%s)", id, known, id, jobs)
}

// ModelTypo reports the known model id that id probably misspells. Any
// RunComfy model id may be used, so only a near miss is a typo: the same
// digits in the same order (ids that differ in a digit are different
// versions, wan-2-2 is no typo of wan-2-5) and at most two edits apart
// (suggest.Distance, case ignored: a capital letter is a typo too), or one
// that differs from it only in case, slashes and dashes. Anything farther is
// taken for a model comfybatch has no schema for.
func ModelTypo(id string, known []string) (string, bool) {
	digits := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, s)
	}
	var near []string
	for _, k := range known {
		if k == id || digits(k) != digits(id) {
			continue
		}
		if suggest.Distance(id, k) <= 2 || squash(id) == squash(k) {
			near = append(near, k)
		}
	}
	if len(near) == 0 {
		return "", false
	}
	best, _ := suggest.Closest(id, near)
	if best == "" {
		best = near[0] // a squash match farther than Closest looks
	}
	return best, true
}

// squash drops what a model id's words are joined with, and case.
func squash(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '/', '-', '_', '.', ' ':
			return -1
		}
		return unicode.ToLower(r)
	}, s)
}

// unlistedKey and unlistedUse gather the input fields a model's schema does
// not list: one warning each, however many jobs carry it.
type unlistedKey struct{ model, field string }

type unlistedUse struct {
	jobs int
	at   manifest.Pos // the first job's, in job order
	name string
}

// unlistedWarnings merges the workers' findings, which come in job order.
func unlistedWarnings(found []map[unlistedKey]*unlistedUse) []string {
	all := map[unlistedKey]*unlistedUse{}
	for _, m := range found {
		for k, u := range m {
			if prev := all[k]; prev != nil {
				prev.jobs += u.jobs
				continue
			}
			all[k] = u
		}
	}
	keys := slices.SortedFunc(maps.Keys(all), func(a, b unlistedKey) int {
		pa, pb := all[a].at, all[b].at
		return cmp.Or(cmp.Compare(pa.File, pb.File), cmp.Compare(pa.Line, pb.Line), cmp.Compare(pa.Col, pb.Col),
			cmp.Compare(a.model, b.model), cmp.Compare(a.field, b.field))
	})
	var out []string
	for _, k := range keys {
		u := all[k]
		out = append(out, fmt.Sprintf(
			"%s: %s is not a field of %s's input schema (%s): it is sent as written and RunComfy may ignore it; check its spelling, or give a schema that lists it with --schema %s=PATH",
			u.at, u.name, k.model, plural(u.jobs, "job"), k.model))
	}
	return out
}

// fieldError places a schema problem at the value that caused it.
func fieldError(j *manifest.Job, fe runcomfy.FieldError) *manifest.Error {
	at, ok := j.FieldPos(fe.Field)
	if !ok {
		at = j.Pos // a missing field has no place of its own: blame the job
	}
	return &manifest.Error{Pos: at, JobID: j.ID, Field: fieldName(at, fe, j.FromDefaults(fe.Field)), Msg: fe.Rule + ": " + fe.Msg}
}

// fieldName names a field the way the manifest's own errors do: a CSV
// column by its header, a value from the defaults as defaults.FIELD,
// anything else as input.FIELD, with [N] or .KEY for a problem deeper in the
// value.
func fieldName(at manifest.Pos, fe runcomfy.FieldError, inDefaults bool) string {
	name := "input"
	switch {
	case inDefaults:
		name = "defaults"
	case strings.HasSuffix(strings.ToLower(at.File), ".csv"):
		name = ""
	}
	if fe.Field == "" {
		return name
	}
	if name != "" {
		name += "."
	}
	name += fe.Field
	if fe.Path == "" {
		return name
	}
	toks := strings.Split(fe.Path, "/")[2:] // "/field/0/x": the field itself is named already
	r := strings.NewReplacer("~1", "/", "~0", "~")
	for _, t := range toks {
		t = r.Replace(t)
		if _, err := strconv.Atoi(t); err == nil {
			name += "[" + t + "]"
		} else {
			name += "." + t
		}
	}
	return name
}

// collapse turns problems that share a place, field and message into one:
// a bad value in defaults or in a matrix is one mistake, written once, and
// would otherwise be reported for each of the 10,000 jobs it reaches. The
// first job keeps the report; the message says how many more share it.
// The result is sorted by file, line and column, then job order.
func collapse(errs []*manifest.Error) manifest.Errors {
	type key struct {
		at         manifest.Pos
		field, msg string
	}
	first := make(map[key]int, len(errs))
	more := make([]int, 0, len(errs))
	var out manifest.Errors
	for _, e := range errs {
		k := key{e.Pos, e.Field, e.Msg}
		if i, ok := first[k]; ok {
			more[i]++
			continue
		}
		first[k] = len(out)
		out = append(out, e)
		more = append(more, 0)
	}
	for i, n := range more {
		if n > 0 {
			out[i].Msg += fmt.Sprintf(" (the same for %s)", plural(n, "more job"))
		}
	}
	SortErrors(out)
	return out
}

// SortErrors orders problems by file, line and column; problems at the same
// place keep their order.
func SortErrors(errs manifest.Errors) {
	slices.SortStableFunc(errs, func(a, b *manifest.Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// MediaUse is one place a media URL is written: a job's input field.
type MediaUse struct {
	JobID string
	Field string
	Pos   manifest.Pos
	Kind  media.Kind
	// InDefaults says the URL is written in the manifest's defaults.
	InDefaults bool
}

// MediaUses lists, for each distinct image and audio URL of the manifest's
// inputs, every job field that uses it. URLs that break the https rule are
// left out: Validate reports them, and RunComfy would never fetch them.
func MediaUses(m *manifest.Manifest) map[string][]MediaUse {
	uses := map[string][]MediaUse{}
	for i := range m.Jobs {
		j := &m.Jobs[i]
		in, _ := j.Values() // Validate reports an input that does not decode
		for _, field := range slices.Sorted(maps.Keys(in)) {
			// ItemsOf one field at a time, so that each URL keeps its field.
			for _, it := range media.ItemsOf(map[string]any{field: in[field]}) {
				if runcomfy.CheckURL(it.URL) != nil {
					continue
				}
				at, ok := j.FieldPos(field)
				if !ok {
					at = j.Pos
				}
				uses[it.URL] = append(uses[it.URL], MediaUse{JobID: j.ID, Field: field, Pos: at, Kind: it.Kind, InDefaults: j.FromDefaults(field)})
			}
		}
	}
	return uses
}

// ValidateMedia fetches each distinct image and audio URL of the manifest
// once through c and reports each problem against every job field that uses
// the URL (collapsed where many jobs share one place, as in Validate). It
// returns nil when every file passes. When ctx ends, the URLs not fetched
// are reported as such; callers check ctx.Err().
func ValidateMedia(ctx context.Context, m *manifest.Manifest, c *media.Checker) error {
	uses := MediaUses(m)
	items := make([]media.Item, 0, len(uses))
	for _, u := range slices.Sorted(maps.Keys(uses)) {
		for _, use := range uses[u] {
			items = append(items, media.Item{URL: u, Kind: use.Kind})
		}
	}
	problems := c.Check(ctx, items)
	var errs []*manifest.Error
	for _, u := range slices.Sorted(maps.Keys(problems)) {
		for _, p := range problems[u] {
			msg := fmt.Sprintf("media %s: %s: %s", p.Rule, clip(u, 80), p.Msg)
			for _, use := range uses[u] {
				name := fieldName(use.Pos, runcomfy.FieldError{Field: use.Field}, use.InDefaults)
				errs = append(errs, &manifest.Error{Pos: use.Pos, JobID: use.JobID, Field: name, Msg: msg})
			}
		}
	}
	if out := collapse(errs); len(out) > 0 {
		return out
	}
	return nil
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
