package manifest

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Pos is a place in a manifest or in one of the files it includes.
type Pos struct {
	File      string // as the user gave it; included files are joined to the manifest's directory
	Line, Col int    // 1-based; 0 when unknown
}

// String renders file:line:col, leaving out the parts that are unknown.
func (p Pos) String() string {
	s := p.File
	if p.Line > 0 {
		s += ":" + strconv.Itoa(p.Line)
		if p.Col > 0 {
			s += ":" + strconv.Itoa(p.Col)
		}
	}
	return s
}

// Error is one problem found in a manifest.
type Error struct {
	Pos
	JobID string // the job's id, or "#N" (its place in its file) while it has none
	Field string // e.g. "input.seed", "matrix.duration", a CSV column name
	Msg   string
}

// Error renders "file:line:col: job ID: field: msg", leaving out empty parts.
func (e Error) Error() string {
	parts := make([]string, 0, 4)
	if p := e.Pos.String(); p != "" {
		parts = append(parts, p)
	}
	if e.JobID != "" {
		parts = append(parts, "job "+e.JobID)
	}
	if e.Field != "" {
		parts = append(parts, e.Field)
	}
	return strings.Join(append(parts, e.Msg), ": ")
}

// Errors is every problem found in a manifest; Load and Parse report all of
// them at once so that one edit can fix them all.
type Errors []*Error

// Error renders one error per line, sorted by file, line and column.
func (es Errors) Error() string {
	sorted := slices.Clone(es)
	sorted.sort()
	lines := make([]string, len(sorted))
	for i, e := range sorted {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As reach the individual *Error values.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sort orders by place; the sort is stable so that errors found at the same
// place keep the order they were found in.
func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
		)
	})
}
