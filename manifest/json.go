package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// member is one "key": value entry of a JSON object.
type member struct {
	key    string
	keyOff int // byte offsets into the text
	off    int
	val    any
	sub    []member // val's own members when it is an object
}

type jsonError struct {
	off int // byte offset into the text
	msg string
}

// readJSON decodes exactly one JSON value, token by token: json.Unmarshal
// would silently keep the last of two equal keys and cannot tell where a
// value starts, and a strict manifest needs both. Numbers become int64 when
// they are integers and float64 otherwise, as YAML numbers do.
func readJSON(src []byte) (any, []member, *jsonError) {
	r := &jsonReader{src: src, dec: json.NewDecoder(bytes.NewReader(src))}
	r.dec.UseNumber()
	v, members, err := r.value(0)
	if err != nil {
		return nil, nil, err
	}
	if _, err := r.dec.Token(); err != io.EOF {
		return nil, nil, &jsonError{r.next(), "unexpected text after the JSON value"}
	}
	return v, members, nil
}

type jsonReader struct {
	src []byte
	dec *json.Decoder
}

// next is the offset where the next token starts: the decoder's offset is
// just past the previous token, before any separator.
func (r *jsonReader) next() int {
	off := int(r.dec.InputOffset())
	for off < len(r.src) && bytes.IndexByte([]byte(" \t\r\n,:"), r.src[off]) >= 0 {
		off++
	}
	return off
}

func (r *jsonReader) value(depth int) (any, []member, *jsonError) {
	start := r.next()
	if depth > maxDepth {
		return nil, nil, &jsonError{start, fmt.Sprintf("nested more than %d levels deep", maxDepth)}
	}
	tok, err := r.dec.Token()
	if err != nil {
		return nil, nil, r.syntax(err)
	}
	switch t := tok.(type) {
	case json.Number:
		n, err := number(string(t))
		if err != nil {
			return nil, nil, &jsonError{start, err.Error()}
		}
		return n, nil, nil
	case json.Delim:
		switch t {
		case '[':
			list := []any{}
			for r.dec.More() {
				v, _, err := r.value(depth + 1)
				if err != nil {
					return nil, nil, err
				}
				list = append(list, v)
			}
			return list, nil, r.close()
		case '{':
			return r.object(depth)
		}
		return nil, nil, &jsonError{start, fmt.Sprintf("unexpected %s", t)}
	}
	return tok, nil, nil // string, bool or nil
}

func (r *jsonReader) object(depth int) (any, []member, *jsonError) {
	obj := map[string]any{}
	var members []member
	for r.dec.More() {
		keyOff := r.next()
		tok, err := r.dec.Token()
		if err != nil {
			return nil, nil, r.syntax(err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, &jsonError{keyOff, "object keys must be strings"}
		}
		if _, dup := obj[key]; dup {
			return nil, nil, &jsonError{keyOff, fmt.Sprintf("duplicate key %q", key)}
		}
		off := r.next()
		v, sub, jerr := r.value(depth + 1)
		if jerr != nil {
			return nil, nil, jerr
		}
		obj[key] = v
		members = append(members, member{key: key, keyOff: keyOff, off: off, val: v, sub: sub})
	}
	return obj, members, r.close()
}

// close reads the ] or } that ends a list or object.
func (r *jsonReader) close() *jsonError {
	if _, err := r.dec.Token(); err != nil {
		return r.syntax(err)
	}
	return nil
}

func (r *jsonReader) syntax(err error) *jsonError {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &jsonError{max(int(se.Offset)-1, 0), se.Error()}
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &jsonError{len(r.src), "unexpected end of the JSON text"}
	}
	return &jsonError{r.next(), err.Error()}
}

func number(s string) (any, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, fmt.Errorf("number %s is out of range", s)
	}
	return zeroSign(f), nil
}
