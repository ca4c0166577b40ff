package manifest

import (
	"fmt"
	"math"
	"strconv"

	"gopkg.in/yaml.v3"
)

// maxDepth bounds how deeply input values may nest: far beyond any model's
// input, and it keeps recursion over hostile files shallow.
const maxDepth = 100

// pair is one "key: value" entry of a YAML mapping.
type pair struct {
	key      string
	keyNode  *yaml.Node
	val      *yaml.Node
	valueAt  Pos
	fieldFor string // the entry's dotted path, for error messages
}

// pairs lists a mapping's entries, reporting keys that are not strings and
// keys given twice (yaml.v3 only checks those when decoding into Go values).
func (p *parser) pairs(n *yaml.Node, path, job string) []pair {
	out := make([]pair, 0, len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := join(path, k.Value)
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			msg := fmt.Sprintf("keys must be strings, not %s (quote it)", describe(k))
			if k.ShortTag() == "!!merge" {
				msg = "YAML merge keys (<<) are not supported; use defaults for shared input"
			}
			p.fail(p.at(k), job, field, msg)
			continue
		}
		if line, dup := seen[k.Value]; dup {
			p.fail(p.at(k), job, field, fmt.Sprintf("duplicate key (first given on line %d)", line))
			continue
		}
		seen[k.Value] = p.at(k).Line
		out = append(out, pair{key: k.Value, keyNode: k, val: v, valueAt: p.at(v), fieldFor: field})
	}
	return out
}

// fields converts a mapping of input fields (a job's input or the defaults)
// and records where each value is written.
func (p *parser) fields(n *yaml.Node, path, job string) (map[string]any, map[string]Pos) {
	entries := p.pairs(n, path, job)
	vals := make(map[string]any, len(entries))
	pos := make(map[string]Pos, len(entries))
	for _, e := range entries {
		vals[e.key] = p.value(e.val, e.fieldFor, job, 1)
		pos[e.key] = e.valueAt
	}
	return vals, pos
}

// value converts a YAML node to the JSON-compatible types a job's input
// holds (string, bool, nil, int64, float64, []any, map[string]any),
// reporting whatever JSON cannot hold.
func (p *parser) value(n *yaml.Node, field, job string, depth int) any {
	// Aliases let a small file stand for a huge tree ("billion laughs"), so
	// every node converted is paid for from a budget sized to the file.
	if p.budget--; p.budget < 0 {
		if !p.budgetSpent {
			p.budgetSpent = true
			p.fail(p.at(n), job, field, "the manifest expands to too many values (YAML aliases referring to aliases?)")
		}
		return nil
	}
	if depth > maxDepth {
		p.fail(p.at(n), job, field, fmt.Sprintf("nested more than %d levels deep", maxDepth))
		return nil
	}
	switch n.Kind {
	case yaml.AliasNode:
		// yaml.v3 lets an anchored node contain an alias to itself.
		if p.expanding[n.Alias] {
			p.fail(p.at(n), job, field, fmt.Sprintf("alias *%s refers to a value that contains it", n.Value))
			return nil
		}
		p.expanding[n.Alias] = true
		defer delete(p.expanding, n.Alias)
		return p.value(n.Alias, field, job, depth+1)
	case yaml.ScalarNode:
		return p.scalar(n, field, job)
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, c := range n.Content {
			out[i] = p.value(c, fmt.Sprintf("%s[%d]", field, i), job, depth+1)
		}
		return out
	case yaml.MappingNode:
		entries := p.pairs(n, field, job)
		out := make(map[string]any, len(entries))
		for _, e := range entries {
			out[e.key] = p.value(e.val, e.fieldFor, job, depth+1)
		}
		return out
	}
	p.fail(p.at(n), job, field, "unsupported YAML node")
	return nil
}

// scalar converts a YAML scalar by its resolved tag: ints become int64 and
// floats float64, so the same number always has the same Go type.
func (p *parser) scalar(n *yaml.Node, field, job string) any {
	switch tag := n.ShortTag(); tag {
	case "!!str", "!!timestamp": // a date stays the text the user wrote
		return n.Value
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			p.fail(p.at(n), job, field, fmt.Sprintf("%q is not a boolean", n.Value))
		}
		return b
	case "!!int":
		if i, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
			return i // the common case, without yaml.v3's slower decoder
		}
		var i int64
		if err := n.Decode(&i); err != nil {
			p.fail(p.at(n), job, field, fmt.Sprintf("%s is not a 64-bit integer", n.Value))
		}
		return i
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			p.fail(p.at(n), job, field, fmt.Sprintf("%q is not a number", n.Value))
			return nil
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			p.fail(p.at(n), job, field, fmt.Sprintf("%s is not a number JSON can carry", n.Value))
			return nil
		}
		return zeroSign(f)
	default:
		p.fail(p.at(n), job, field, fmt.Sprintf("unsupported YAML tag %s", tag))
		return nil
	}
}

// resolve follows an alias (*name) in a structural position (jobs, input,
// matrix...) to the node it stands for. Anchors cannot be aliases, so one
// step is enough; the loop only guards against a malformed tree.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	return n
}

// lookup finds the value of key in a mapping without reporting anything.
func lookup(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!str" && k.Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// describe names a node's type for messages like "must be a string, not a list".
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch tag := n.ShortTag(); tag {
	case "!!str":
		return "a string"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	default:
		return tag
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// zeroSign turns -0 into 0: JSON prints them differently, and a fingerprint
// must not tell them apart.
func zeroSign(f float64) float64 {
	if f == 0 {
		return 0
	}
	return f
}
