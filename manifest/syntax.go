package manifest

import (
	"fmt"
	"strings"
)

// syntaxAt moves a YAML syntax error from where yaml.v3 says it is to where
// the mistake is. yaml.v3 names the line where the construct it was reading
// began (its context mark), not the line it choked on, and does not export
// the latter; so each common mistake is found again in the text, from that
// line on, and anything else keeps yaml.v3's line:
//
//   - a tab in the indentation: yaml.v3 names the line before it;
//   - a key without its ':': the key runs on into the next line as one plain
//     text, and yaml.v3 blames the ':' there ("mapping values are not
//     allowed in this context");
//   - a line indented to a level nothing above it has ("did not find
//     expected key"): yaml.v3 names the start of the enclosing mapping or list.
//
// line is 1-based; col is 0 when unknown.
func syntaxAt(data []byte, line int, msg string) (at, col int, why string) {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	if line < 1 || line > len(lines) {
		return line, 0, msg
	}
	switch {
	case strings.Contains(msg, "tab character"):
		for i := line - 1; i < len(lines); i++ {
			if c := tabInIndent(lines[i]); c > 0 {
				return i + 1, c, "a tab in the indentation; indent with spaces"
			}
		}
	case strings.Contains(msg, "cannot start any token"):
		if c := tabInIndent(lines[line-1]); c > 0 {
			return line, c, "a tab in the indentation; indent with spaces"
		}
	case strings.Contains(msg, "mapping values are not allowed"):
		if p := prevContent(lines, line-1); p >= 0 && !hasKey(lines[p]) {
			return p + 1, 0, fmt.Sprintf("a key without its ':'? This line runs on into line %d, where ':' is not allowed", line)
		}
		if strings.Count(stripComment(lines[line-1]), ": ") > 1 {
			return line, 0, msg + `; quote a value that holds ": "`
		}
	case strings.HasPrefix(msg, "did not find expected key"), strings.HasPrefix(msg, "did not find expected '-'"):
		if i := badDedent(lines, line-1); i >= 0 {
			return i + 1, indentOf(lines[i]) + 1, "this line is indented to a level no line above it has; line it up with the key or list it belongs to"
		}
	}
	return line, 0, msg
}

// tabInIndent is the 1-based column of the first tab before a line's text,
// or 0.
func tabInIndent(s string) int {
	for i, r := range s {
		switch r {
		case '\t':
			return i + 1
		case ' ':
		default:
			return 0
		}
	}
	return 0
}

// isContent reports a line that holds YAML, not only blanks or a comment.
func isContent(s string) bool {
	t := strings.TrimSpace(s)
	return t != "" && !strings.HasPrefix(t, "#")
}

// prevContent is the index of the last content line before index i, or -1.
func prevContent(lines []string, i int) int {
	for i--; i >= 0; i-- {
		if isContent(lines[i]) {
			return i
		}
	}
	return -1
}

// hasKey reports a line that holds a "key:" (or is a flow or quoted value,
// which this check cannot read).
func hasKey(s string) bool {
	t := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "-"))
	if t == "" || strings.ContainsAny(t[:1], `"'{[|>&*!`) {
		return true
	}
	return strings.Contains(t, ": ") || strings.HasSuffix(t, ":") || strings.Contains(t, ":\t")
}

func indentOf(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }

// badDedent finds, from index from on, the first line whose indentation
// goes back to a level that no open mapping or list has, reading the
// indentation the way YAML nests it: "- " opens a level for the item's
// own keys, and block scalars (| and >) are skipped. -1 when there is none.
func badDedent(lines []string, from int) int {
	var open []int // indentation levels open above the current line
	deepest := 0   // the deepest level the previous line opened
	scalar := -1   // indentation of the line whose block scalar is being skipped
	for i, s := range lines {
		if !isContent(s) {
			continue
		}
		ind := indentOf(s)
		if scalar >= 0 {
			if ind > scalar {
				continue
			}
			scalar = -1
		}
		for len(open) > 0 && open[len(open)-1] > ind {
			open = open[:len(open)-1]
		}
		if i >= from && len(open) > 0 && open[len(open)-1] < ind && ind < deepest {
			return i // back out of a level, but not as far as the one above
		}
		if len(open) == 0 || open[len(open)-1] < ind {
			open = append(open, ind)
		}
		deepest = ind
		t := s[ind:]
		for strings.HasPrefix(t, "- ") { // "- key: v" opens the item's own level
			t = strings.TrimLeft(t[1:], " ")
			deepest = len(s) - len(t)
			open = append(open, deepest)
		}
		if w := lastWord(stripComment(t)); w != "" && (w[0] == '|' || w[0] == '>') && strings.Trim(w, "|>+-0123456789") == "" {
			scalar = ind
		}
	}
	return -1
}

func stripComment(s string) string {
	if i := strings.Index(s, " #"); i >= 0 {
		return s[:i]
	}
	return s
}

func lastWord(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}
