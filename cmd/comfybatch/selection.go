package main

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"comfybatch/lifecycle"
	"comfybatch/suggest"
)

// A job selection is what --job names, on run, status, results and cancel:
// ids, repeated (--job a --job b) or in comma lists (--job a,b), and globs
// (--job 'tub.*'). Ids never hold a comma nor a glob character (manifest
// ids are [A-Za-z0-9][A-Za-z0-9._-]*), so neither form is ambiguous. Globs
// are worth having because matrix jobs are named by their parent's id with
// the matrix values after a dot: 'tub-variants.*' is every variant.

// jobPatterns reads the --job values into a list of ids and globs, each
// once, in the order given. A malformed glob is a usage error.
func jobPatterns(values []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				if strings.TrimSpace(v) == "" {
					return nil, usagef("--job needs a job id (or a comma list of ids, or a glob such as 'tub.*')")
				}
				continue // a trailing or doubled comma
			}
			if isGlob(p) {
				if _, err := path.Match(p, ""); err != nil {
					return nil, usagef("--job %q: not a valid glob (%v); * matches any run of characters, ? one, [abc] one of a set", p, err)
				}
			}
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func isGlob(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// selectJobs resolves patterns against every id that each yields, in that
// order: the ids any pattern matches, each once, in each's order. Every
// pattern must match a job; one that does not is a usage error (exit 2),
// with a "did you mean" for a mistyped id. where names where the ids come
// from ("manifest", "ledger") and list how to see them.
func selectJobs(patterns []string, each func(func(id string) error) error, where, list string) (map[string]bool, []string, error) {
	exact := map[string]bool{}
	var globs []string
	for _, p := range patterns {
		if isGlob(p) {
			globs = append(globs, p)
		} else {
			exact[p] = false
		}
	}
	matched := map[string]bool{}
	selected := map[string]bool{}
	var order []string
	err := each(func(id string) error {
		hit := false
		if _, ok := exact[id]; ok {
			exact[id], hit = true, true
		}
		for _, g := range globs {
			if ok, _ := path.Match(g, id); ok {
				matched[g], hit = true, true
			}
		}
		if hit && !selected[id] {
			selected[id] = true
			order = append(order, id)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var missing []*idSuggester
	var problems []string
	for _, p := range patterns {
		switch {
		case isGlob(p) && !matched[p]:
			problems = append(problems, fmt.Sprintf("--job %q matches no job in the %s", p, where))
		case !isGlob(p) && !exact[p]:
			missing = append(missing, newSuggester(p))
		}
	}
	if len(missing) > 0 {
		// A second pass, only on a mistake, to find what was meant.
		if err := each(func(id string) error {
			for _, s := range missing {
				s.consider(id)
			}
			return nil
		}); err != nil {
			return nil, nil, err
		}
		for _, s := range missing {
			problems = append(problems, fmt.Sprintf("job %s is not in the %s%s", s.word, where, s.hint()))
		}
	}
	if len(problems) > 0 {
		return nil, nil, usageError{fmt.Errorf("%s; nothing was done (%s)", strings.Join(problems, "; "), list)}
	}
	return selected, order, nil
}

// parseStates reads --state values (cobra has split the commas): each must
// be a job state.
func parseStates(values []string) ([]lifecycle.State, error) {
	names := make([]string, len(lifecycle.States))
	for i, st := range lifecycle.States {
		names[i] = string(st)
	}
	var out []lifecycle.State
	var errs []error
	seen := map[lifecycle.State]bool{}
	for _, v := range values {
		st := lifecycle.State(strings.ToLower(strings.TrimSpace(v)))
		if !st.Valid() {
			hint := ""
			if c, ok := suggest.Closest(string(st), names); ok {
				hint = " (did you mean " + c + "?)"
			}
			errs = append(errs, fmt.Errorf("--state %q is not a job state%s (the states: %s)", v, hint, strings.Join(names, ", ")))
			continue
		}
		if !seen[st] {
			seen[st] = true
			out = append(out, st)
		}
	}
	if len(errs) > 0 {
		return nil, usageError{errors.Join(errs...)}
	}
	return out, nil
}

// idSuggester finds, among job ids shown to it one at a time, the one a
// mistyped id most likely meant, by suggest's idea of a typo: the nearest
// within suggest.Limit, and none when two are as near. Ids are streamed so
// that a ledger of 100,000 is never held.
type idSuggester struct {
	word string
	best string
	dist int
	tie  bool
	// children is the separator ("." or "-") with which some id extends
	// word, as a matrix job's expansions extend its id: word.* selects them.
	children string
}

func newSuggester(word string) *idSuggester { return &idSuggester{word: word, dist: -1} }

func (s *idSuggester) consider(c string) {
	if rest, ok := strings.CutPrefix(c, s.word); ok && rest != "" && (rest[0] == '.' || rest[0] == '-') && s.children == "" {
		s.children = rest[:1]
	}
	limit := suggest.Limit(max(utf8.RuneCountInString(s.word), utf8.RuneCountInString(c)))
	if d := len(c) - len(s.word); d > limit || -d > limit {
		return // too far apart in length to be a typo
	}
	d := suggest.Distance(s.word, c)
	switch {
	case d > limit:
	case s.dist < 0 || d < s.dist:
		s.best, s.dist, s.tie = c, d, false
	case d == s.dist && c != s.best:
		s.tie = true
	}
}

// hint is " (did you mean X?)", or "" when nothing is near, or two are.
func (s *idSuggester) hint() string {
	switch {
	case s.dist >= 0 && !s.tie:
		return " (did you mean " + s.best + "?)"
	case s.children != "":
		return " (did you mean '" + s.word + s.children + "*'?)"
	}
	return ""
}
