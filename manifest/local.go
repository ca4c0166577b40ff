package manifest

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"comfybatch/localfile"
)

// localRefs turns the local file paths of an input's media fields (a
// FileField whose value is no URL) into Refs, relative paths read from the
// manifest's folder. input is left as it is: the returned map is a copy
// when anything changed. ok is false when a file could not be read; the
// error is reported at the value.
func (p *parser) localRefs(d draft, input map[string]any, own []fieldAt) (map[string]any, bool) {
	var out map[string]any
	ok := true
	for field, v := range input {
		if !localfile.FileField(field) {
			continue
		}
		conv := func(s string) string {
			if !localfile.IsPath(s) {
				return s
			}
			ref, err := p.localRef(s)
			if err != "" {
				at := p.placeOf(d, field, own)
				p.fail(at, d.ref, p.fieldLabel(at, field), err)
				ok = false
				return s
			}
			return ref.String()
		}
		switch x := v.(type) {
		case string:
			if c := conv(x); c != x {
				if out == nil {
					out = cloneMap(input)
				}
				out[field] = c
			}
		case []any:
			var list []any
			for i, e := range x {
				s, isStr := e.(string)
				if !isStr {
					continue
				}
				if c := conv(s); c != s {
					if list == nil {
						list = slices.Clone(x)
					}
					list[i] = c
				}
			}
			if list != nil {
				if out == nil {
					out = cloneMap(input)
				}
				out[field] = list
			}
		}
	}
	if out == nil {
		return input, ok
	}
	return out, ok
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// placeOf is where a job's field is written: in the job, else in the
// defaults, else the job itself.
func (p *parser) placeOf(d draft, field string, own []fieldAt) Pos {
	if i, ok := p.nameIndex[field]; ok {
		for _, f := range own {
			if f.name == i {
				return Pos{File: d.at.File, Line: int(f.line), Col: int(f.col)}
			}
		}
	}
	if at, ok := p.places.defaults[field]; ok {
		return at
	}
	return d.at
}

// fieldLabel names a field as the manifest's other errors do: a CSV column
// by its name, a value from the defaults as defaults.FIELD.
func (p *parser) fieldLabel(at Pos, field string) string {
	switch {
	case p.places.defaults[field] == at:
		return "defaults." + field
	case strings.HasSuffix(strings.ToLower(at.File), ".csv"):
		return field
	}
	return "input." + field
}

// localRef reads a local file once per manifest and makes its Ref; the
// string is why it could not, or "".
func (p *parser) localRef(written string) (localfile.Ref, string) {
	rel := filepath.ToSlash(strings.TrimSpace(written))
	if r, ok := p.locals[rel]; ok {
		return r, ""
	}
	path := filepath.FromSlash(rel)
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.m.Dir, path)
	}
	sum, _, err := localfile.Hash(path)
	if err != nil {
		return localfile.Ref{}, fmt.Sprintf("%s is neither a URL nor a readable local file (%s; local files are read relative to the manifest's folder)", written, reason(err))
	}
	r := localfile.Ref{Path: rel, SHA256: sum}
	if p.locals == nil {
		p.locals = map[string]localfile.Ref{}
	}
	p.locals[rel] = r
	p.m.Files = append(p.m.Files, path)
	return r, ""
}
