package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// maxIDLen bounds ids so that "<id>+<n>.<ext>" stays a legal file name everywhere.
const maxIDLen = 128

// reservedID is the stem of a file comfybatch writes in the output folder
// itself (metadata.jsonl): a job of that name could be given its name.
const reservedID = "metadata"

// Reserved reports an id that names a file comfybatch writes itself
// (compared without regard to case, as some file systems do).
func Reserved(id string) bool { return strings.EqualFold(id, reservedID) }

// ValidID reports whether id matches [A-Za-z0-9][A-Za-z0-9._-]{0,127}. Ids
// become file names in the output folder: the leading letter or digit rules
// out ".", ".." and hidden files, and the character set rules out path
// separators, so an id can never point outside that folder.
func ValidID(id string) bool {
	if id == "" || len(id) > maxIDLen || !isAlnum(id[0]) || Reserved(id) {
		return false
	}
	return idChars(id)
}

// ShortID is the id a job without one gets: the first 12 hex digits of its
// fingerprint (48 bits: a collision among 100,000 jobs has odds of about 1 in
// 50,000, and would be reported as a duplicate id, never silently merged).
func ShortID(fingerprint string) string {
	const n = 12
	if len(fingerprint) <= n {
		return fingerprint
	}
	return fingerprint[:n]
}

// fingerprint hashes a job's model and canonical input: the bytes
// json.Marshal gives {"model": model, "input": input}, whose keys it sorts.
// json.Marshal also prints an integral float64 exactly like the int64 of the
// same value (5.0 → 5), which makes it canonical for the values a manifest
// can hold; -0.0 is turned into 0 when values are read, the one case it
// misses.
func fingerprint(model string, input []byte) [32]byte {
	m, _ := json.Marshal(model) // a string: cannot fail
	h := sha256.New()
	h.Write([]byte(`{"input":`))
	h.Write(input)
	h.Write([]byte(`,"model":`))
	h.Write(m)
	h.Write([]byte(`}`))
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// decodeInput reads a job's canonical input back into the types the
// manifest gives values: int64 for integers, float64 for other numbers.
func decodeInput(in []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	for k, v := range m {
		m[k] = numbers(v)
	}
	return m, nil
}

func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if n, err := number(string(v)); err == nil {
			return n
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = numbers(e)
		}
	case map[string]any:
		for k, e := range v {
			v[k] = numbers(e)
		}
	}
	return v
}

// render writes a matrix value as plain text for an id: strings as they are,
// everything else as its canonical JSON (5, 0.5, true, null).
func render(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v) // scalars only: cannot fail
	return string(b)
}

// idPart turns a matrix field name or rendered value into a piece of an id.
// Short id-safe text is kept as it is so ids read naturally (seed-1,
// resolution-720P). Anything else keeps a readable prefix and gets a hash of
// the full text, so two values that differ only in unsafe characters ("a/b",
// "a b") still get different ids.
func idPart(s string) string {
	if s != "" && len(s) <= 32 && idChars(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 16; i++ {
		if c := s[i]; idChar(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(s))
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(sum[:4]))
	return b.String()
}

func idChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if !idChar(s[i]) {
			return false
		}
	}
	return true
}

func idChar(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == '-' }

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
