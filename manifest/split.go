package manifest

import (
	"bytes"
	"io"
	"slices"

	"gopkg.in/yaml.v3"
)

// A YAML document is parsed whole: yaml.v3 builds every node before handing
// any over, about 1.9 KB a job, so a manifest listing 100,000 jobs would need
// near 200 MB just for its tree. When the jobs list is written the ordinary
// way — a top-level "jobs:" line followed by block entries ("- ...") at one
// indentation — the entries are parsed a group at a time instead, and the
// rest of the file on its own with the list's lines left blank (so every
// line keeps its number).
//
// The split is found from the text, so it is checked rather than trusted:
// every group must parse by itself into exactly the entries found, each on
// the line where it was found, and the rest must hold "jobs:" as a key on its
// line with nothing under it. Anything else — and any problem in the
// manifest at all — makes Parse start over with the whole document, so
// errors are always reported from the whole file, and a file the split
// misreads is only slower, never read differently. FuzzSplit checks that.

// groupEntries is how many jobs-list entries are parsed at once: enough that
// the per-document overhead is lost in the noise, few enough that a group's
// nodes are a few megabytes at most.
const groupEntries = 512

// jobsText is a manifest's jobs list cut into groups of entries.
type jobsText struct {
	rest    []byte // the manifest with the list's lines blanked
	keyLine int    // 1-based line of "jobs:"
	indent  int    // column (0-based) of every entry's "-"
	groups  []entryGroup
}

// entryGroup is a run of consecutive entries: the text from the first one's
// line to the next group's.
type entryGroup struct {
	text  []byte
	line  int   // 1-based line where text starts
	lines []int // 1-based line of each entry's "-"
}

// splitJobs finds the jobs list of a block-style manifest and cuts it into
// groups of per entries. It reports false
// when the file is written in a way it does not follow; the caller then
// parses the whole document.
func splitJobs(data []byte, per int) (jobsText, bool) {
	var jt jobsText
	type line struct {
		start, end int // end excludes the newline
	}
	var lines []line
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			lines = append(lines, line{off, len(data)})
			break
		}
		lines = append(lines, line{off, off + end})
		off += end + 1
	}
	text := func(i int) []byte { return bytes.TrimSuffix(data[lines[i].start:lines[i].end], []byte("\r")) }

	// The document must open as a block mapping: its first significant line
	// starts a plain key at column 0.
	key, opened := -1, false
	for i := range lines {
		t := text(i)
		ind, significant := indentation(t)
		if !significant {
			continue
		}
		if !opened && (ind != 0 || !plainKeyStart(t[0])) {
			return jt, false
		}
		opened = true
		if ind == 0 && isJobsKey(t) {
			if key >= 0 {
				return jt, false // given twice: the whole parse reports it
			}
			key = i
		}
	}
	if key < 0 {
		return jt, false
	}
	jt.keyLine = key + 1

	// The entries: every significant line is either deeper than the "-" of
	// the entries, or an entry, or (at column 0) the next top-level key.
	end := len(lines)
	jt.indent = -1
	var entries []int
	for i := key + 1; i < len(lines); i++ {
		t := text(i)
		ind, significant := indentation(t)
		if !significant {
			continue
		}
		if ind < len(t) && t[ind] == '\t' {
			return jt, false
		}
		if jt.indent < 0 {
			if !isEntry(t, ind) {
				return jt, false // a flow list, a scalar, an anchor...: not ours
			}
			jt.indent = ind
		}
		switch {
		case ind == jt.indent && isEntry(t, ind):
			entries = append(entries, i)
			continue
		case ind > jt.indent:
			continue
		case ind == 0:
			end = i
		default:
			return jt, false
		}
		break
	}
	if len(entries) == 0 {
		return jt, false
	}

	for g := 0; g < len(entries); g += per {
		first, next := entries[g], end
		if g+per < len(entries) {
			next = entries[g+per]
		}
		stop := len(data)
		if next < len(lines) {
			stop = lines[next].start
		}
		grp := entryGroup{text: data[lines[first].start:stop], line: first + 1}
		for _, e := range entries[g:min(g+per, len(entries))] {
			grp.lines = append(grp.lines, e+1)
		}
		jt.groups = append(jt.groups, grp)
	}

	// The rest keeps every newline, so its lines keep their numbers.
	from, to := lines[key].end, len(data)
	if end < len(lines) {
		to = lines[end].start
	}
	rest := make([]byte, 0, len(data)-(to-from)+bytes.Count(data[from:to], []byte("\n")))
	rest = append(rest, data[:from]...)
	for _, c := range data[from:to] {
		if c == '\n' {
			rest = append(rest, c)
		}
	}
	jt.rest = append(rest, data[to:]...)
	return jt, true
}

// indentation counts a line's leading spaces and says whether it holds
// anything but blanks and a comment.
func indentation(t []byte) (int, bool) {
	ind := 0
	for ind < len(t) && t[ind] == ' ' {
		ind++
	}
	rest := bytes.TrimLeft(t[ind:], " \t")
	return ind, len(rest) > 0 && rest[0] != '#'
}

// isJobsKey matches `jobs:` alone on its line, or followed by a comment.
func isJobsKey(t []byte) bool {
	after, ok := bytes.CutPrefix(t, []byte("jobs:"))
	if !ok {
		return false
	}
	after = bytes.TrimLeft(after, " \t")
	return len(after) == 0 || (after[0] == '#' && len(after) < len(t)-len("jobs:"))
}

// isEntry says whether the line holds a block sequence entry's "-" at ind.
func isEntry(t []byte, ind int) bool {
	return ind < len(t) && t[ind] == '-' && (ind+1 == len(t) || t[ind+1] == ' ' || t[ind+1] == '\t')
}

// plainKeyStart accepts the characters a plain top-level key can start with,
// leaving out every YAML indicator.
func plainKeyStart(c byte) bool {
	return isAlnum(c) || c == '_'
}

// groups reads the jobs list group by group, in place of jobs. It reports
// false, having read nothing more, when a group does not hold the entries the
// split found, or the rest of the file does not hold "jobs:" where it was.
func (p *parser) groups(e *pair) bool {
	jt := p.split
	if e.keyNode.Line != jt.keyLine || e.keyNode.Column != 1 ||
		e.val.Kind != yaml.ScalarNode || e.val.ShortTag() != "!!null" || e.val.Value != "" {
		return false
	}
	defer func() { p.lineOff = 0 }()
	// One job an entry at least: sized once, the list and the ids are not
	// copied as they grow.
	entries := 0
	for _, g := range jt.groups {
		entries += len(g.lines)
	}
	entries = min(entries, p.maxJobs)
	p.m.Jobs = slices.Grow(p.m.Jobs, entries)
	index := 0
	for _, g := range jt.groups {
		dec := yaml.NewDecoder(bytes.NewReader(g.text))
		var doc, extra yaml.Node
		if decode(dec, &doc) != nil || decode(dec, &extra) != io.EOF || len(doc.Content) != 1 {
			return false
		}
		seq := doc.Content[0]
		if seq.Kind != yaml.SequenceNode || seq.Style&yaml.FlowStyle != 0 || len(seq.Content) != len(g.lines) ||
			seq.Column != jt.indent+1 {
			return false
		}
		p.lineOff = g.line - 1
		for i, item := range seq.Content {
			// Each entry must start within the lines of its own "-".
			if line := p.at(item).Line; line < g.lines[i] || (i+1 < len(g.lines) && line >= g.lines[i+1]) {
				return false
			}
		}
		for _, item := range seq.Content {
			index++
			p.entries++
			p.yamlJob(item, index)
		}
	}
	return true
}
