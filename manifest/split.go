package manifest

import (
	"bufio"
	"bytes"
	"hash/crc32"
	"io"
	"math"
	"os"
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

// source is a manifest's text, read line by line as often as needed: a
// file is read again rather than held, so that a 100,000-job manifest never
// sits in memory whole next to the jobs made from it.
type source interface {
	// lines calls fn with each line in order, its newline included; fn's
	// line is only valid during the call.
	lines(fn func(line []byte) bool) error
	bytes() ([]byte, error) // the whole text
	size() int
}

// memory is a manifest held in memory (Parse).
type memory []byte

func (m memory) lines(fn func([]byte) bool) error {
	for data := []byte(m); len(data) > 0; {
		n := bytes.IndexByte(data, '\n') + 1
		if n == 0 {
			n = len(data)
		}
		if !fn(data[:n]) {
			break
		}
		data = data[n:]
	}
	return nil
}

func (m memory) bytes() ([]byte, error) { return m, nil }
func (m memory) size() int              { return len(m) }

// file is a manifest on disk (Load).
type file struct {
	f *os.File
	n int
}

func (fl file) lines(fn func([]byte) bool) error {
	if _, err := fl.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(fl.f, 64<<10)
	var long []byte // a line longer than the buffer, put together
	for {
		chunk, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if long != nil {
			line, long = append(long, chunk...), nil
		}
		if len(line) > 0 && !fn(line) {
			return nil
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (fl file) bytes() ([]byte, error) {
	if _, err := fl.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(fl.f)
}

func (fl file) size() int { return fl.n }

// jobsText is where a manifest's jobs list is, found by splitJobs.
type jobsText struct {
	src     source
	per     int     // entries a group
	rest    []byte  // the manifest with the list's lines blanked
	keyLine int     // 1-based line of "jobs:"
	indent  int     // column (0-based) of every entry's "-"
	entries []int32 // 1-based line of each entry's "-"
	end     int     // 1-based line just past the list
	sum     uint32  // checksum of the list's text, to notice a file that changed between reads
}

// entryGroup is a run of consecutive entries: the text from the first one's
// line (the first group's from the line under "jobs:") to the next group's.
type entryGroup struct {
	text  []byte
	line  int     // 1-based line where text starts
	lines []int32 // 1-based line of each entry's "-"
}

// splitJobs finds the jobs list of a block-style manifest, reading src once.
// It reports false when the file is written in a way it does not follow; the
// caller then parses the whole document.
func splitJobs(src source, per int) (*jobsText, bool, error) {
	jt := &jobsText{src: src, per: per, indent: -1}
	const (
		before = iota
		inList
		after
	)
	state, opened, started, ok, n := before, false, false, true, 0
	crc := crc32.NewIEEE()
	err := src.lines(func(raw []byte) bool {
		n++
		t := bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
		if otherBreak(t) {
			ok = false // lines would be counted differently from yaml.v3
			return false
		}
		if n == 1 {
			t = bytes.TrimPrefix(t, bom) // yaml.v3 drops it; the rest keeps it
		}
		ind, significant := indentation(t)
		if state == inList && significant && ind == 0 && !(jt.indent <= 0 && isEntry(t, 0)) {
			state, jt.end = after, n
		}
		switch {
		case state == inList:
			crc.Write(raw)
			if bytes.HasSuffix(raw, []byte("\n")) {
				jt.rest = append(jt.rest, '\n')
			}
			if !significant {
				return true
			}
			if ind < len(t) && t[ind] == '\t' {
				ok = false
				return false
			}
			if jt.indent < 0 {
				if !isEntry(t, ind) {
					ok = false // a flow list, a scalar, an anchor...: not ours
					return false
				}
				jt.indent = ind
			}
			switch {
			case ind == jt.indent && isEntry(t, ind):
				jt.entries = append(jt.entries, int32(min(n, math.MaxInt32)))
			case ind > jt.indent:
			default:
				ok = false
				return false
			}
			return true
		case !significant:
		case !opened && !started && isDocStart(t):
			// A "---" before the first key opens the document, as many
			// tools write it; it stays in the rest.
			started = true
			jt.rest = append(jt.rest, raw...)
			return true
		case !opened && (ind != 0 || !plainKeyStart(t[0])):
			// The document must open as a block mapping: its first
			// significant line starts a plain key at column 0.
			ok = false
			return false
		case ind == 0 && isJobsKey(t):
			if state == after {
				ok = false // given twice: the whole parse reports it
				return false
			}
			state, jt.keyLine = inList, n
		}
		opened = opened || significant
		jt.rest = append(jt.rest, raw...)
		return true
	})
	if err != nil {
		return nil, false, err
	}
	if state == inList {
		jt.end = n + 1
	}
	if !ok || jt.keyLine == 0 || len(jt.entries) == 0 {
		return nil, false, nil
	}
	jt.sum = crc.Sum32()
	return jt, true, nil
}

// eachGroup reads the list again, from src, and hands over its entries per
// at a time. It reports false if the text is not what splitJobs read.
func (jt *jobsText) eachGroup(fn func(entryGroup) bool) (bool, error) {
	var buf []byte
	n, g, stopped := 0, 0, false
	crc := crc32.NewIEEE()
	flush := func() bool {
		// The first group starts right under "jobs:", so that the comments
		// before the first entry are read too, as the whole parse reads them.
		line := jt.keyLine + 1
		if g > 0 {
			line = int(jt.entries[g*jt.per])
		}
		grp := entryGroup{text: buf, line: line, lines: jt.entries[g*jt.per : min((g+1)*jt.per, len(jt.entries))]}
		g++
		buf = buf[:0]
		return fn(grp)
	}
	err := jt.src.lines(func(raw []byte) bool {
		n++
		if n <= jt.keyLine || n >= jt.end {
			return n < jt.end
		}
		crc.Write(raw)
		// A new group starts at every per-th entry.
		if next := (g + 1) * jt.per; next < len(jt.entries) && n == int(jt.entries[next]) && !flush() {
			stopped = true
			return false
		}
		buf = append(buf, raw...)
		return true
	})
	if err != nil || stopped {
		return false, err
	}
	if crc.Sum32() != jt.sum {
		return false, nil
	}
	return flush(), nil
}

// otherBreak finds the line breaks YAML knows besides "\n" and "\r\n": a
// lone CR, NEL, LS and PS. The split counts lines by "\n" alone.
func otherBreak(t []byte) bool {
	return bytes.IndexByte(t, '\r') >= 0 || bytes.Contains(t, []byte("\u0085")) ||
		bytes.Contains(t, []byte("\u2028")) || bytes.Contains(t, []byte("\u2029"))
}

// aliasAfter reports an alias in n's tree below line: after the jobs list,
// an alias may name an anchor defined inside the list, which the rest of the
// file, parsed without the list, cannot see (and may resolve to an earlier
// anchor of the same name).
func aliasAfter(n *yaml.Node, line int) bool {
	if n.Kind == yaml.AliasNode && n.Line > line {
		return true
	}
	for _, c := range n.Content {
		if aliasAfter(c, line) {
			return true
		}
	}
	return false
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

// isDocStart matches a "---" line with nothing after it but a comment.
func isDocStart(t []byte) bool {
	after, ok := bytes.CutPrefix(t, []byte("---"))
	if !ok {
		return false
	}
	rest := bytes.TrimLeft(after, " \t")
	return len(rest) == 0 || (rest[0] == '#' && len(rest) < len(after))
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
		e.val.Kind != yaml.ScalarNode || e.val.ShortTag() != "!!null" || e.val.Value != "" ||
		aliasAfter(p.root, jt.keyLine) {
		return false
	}
	defer func() { p.lineOff = 0 }()
	// One job an entry at least: sized once, the list is not copied as it grows.
	p.m.Jobs = slices.Grow(p.m.Jobs, min(len(jt.entries), p.maxJobs))
	index := 0
	ok, err := jt.eachGroup(func(g entryGroup) bool {
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
			if line := p.at(item).Line; line < int(g.lines[i]) || (i+1 < len(g.lines) && line >= int(g.lines[i+1])) {
				return false
			}
		}
		for _, item := range seq.Content {
			index++
			p.entries++
			p.yamlJob(item, index)
		}
		return true
	})
	return ok && err == nil
}
