package runcomfy

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
)

// resultMembers are the top-level members of a result answer the client
// reads: Result's fields, and errorBody's for the message of a failed
// call. They are taken from the types, so that a field added to either is
// never filtered out of the answers it is read from.
var resultMembers = jsonNames(reflect.TypeFor[Result](), reflect.TypeFor[errorBody]())

// jsonNames lists the member names encoding/json decodes into the structs.
func jsonNames(types ...reflect.Type) []string {
	var names []string
	for _, t := range types {
		for f := range t.Fields() {
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			switch {
			case name == "-" && tag == "-" || !f.IsExported() && !f.Anonymous:
				continue
			case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
				names = append(names, jsonNames(f.Type)...)
				continue
			case name == "":
				name = f.Name
			}
			names = append(names, name)
		}
	}
	return names
}

// smallValue is how much of the values of members the client does not
// read is kept, in all: a new field the client does not read yet is passed
// on unless it is large. A proxy's padding or a field of megabytes the
// client has no use for is what the filter is for.
const smallValue = 64 << 10

// droppedMark stands in for a dropped value whose bytes turned out not to
// be JSON: it cannot begin a value, so the answer stays as malformed as it
// was, and it says why the bytes are missing.
const droppedMark = "<dropped>"

// maxDepth is encoding/json's nesting limit: a value nested deeper is
// invalid to it, so it must not be turned into a valid null here.
const maxDepth = 10000

// resultFilter reads a result answer, passing its bytes through except the
// large values of top-level members the client does not read (past small
// bytes of such values in all): each becomes null, its bytes skipped as
// they stream, never held. Memory then depends on what the client reads,
// not on what the server sends (but for the names of members, and values
// of a few bytes, which are kept).
//
// An answer that is not a JSON object passes through unchanged. The bytes
// of an object are checked as encoding/json would check them, so that a
// value is dropped only when it is valid JSON; at the first byte that is
// not, the rest passes through unchanged (after droppedMark if it was
// inside a dropped value), and the answer stays invalid.
type resultFilter struct {
	src   io.Reader
	small int // the most bytes kept of the values of members the client does not read, in all
	spare int // what is left of small
	in    []byte
	out   []byte // filtered bytes not yet read, from off
	off   int
	err   error // from src, returned once out is read

	st      state
	stack   []byte // open containers, '{' or '['; the answer's object first
	lit     string // the rest of a literal being read
	hexLeft int    // hex digits left in a \u escape

	isKey   bool   // the string being read is a member name
	key     []byte // the top-level member name being read, or last read, as written
	longKey bool   // it is longer than maxKey: none the client reads
	mode    mode   // where the current bytes go
	hold    []byte // the start of a droppable value, while it is small
	holdMax int    // the most bytes the value being held may have
	dropped int    // values dropped (for tests)
}

type state uint8

const (
	sBegin         state = iota // before the answer's first byte
	sPass                       // everything passes through unchanged
	sObjKeyOrEnd                // after {
	sObjKey                     // after , in an object
	sColon                      // after a member name
	sValue                      // after : or , in an array
	sArrValueOrEnd              // after [
	sAfterValue                 // after a value in a container
	sString
	sEscape
	sHex
	sNeg      // after -
	sZero     // after a leading 0
	sInt      // in the integer part
	sDot      // after .
	sFrac     // in the fraction
	sExp      // after e or E
	sExpSign  // after the exponent's sign
	sExpDigit // in the exponent
	sLiteral  // in true, false or null
)

type mode uint8

const (
	emit mode = iota // the bytes pass through
	hold             // held: a droppable value, small so far
	drop             // skipped: a large droppable value
)

// maxKey is the most bytes a name the client reads can be written in:
// each of its characters as a \u escape. A longer name is none of them.
var maxKey = func() int {
	n := 0
	for _, name := range resultMembers {
		n = max(n, len(name))
	}
	return 6 * n
}()

func newResultFilter(src io.Reader, small int) *resultFilter {
	small = max(small, len(droppedMark))
	return &resultFilter{src: src, small: small, spare: small}
}

func (f *resultFilter) Read(p []byte) (int, error) {
	for f.off == len(f.out) {
		if f.err != nil {
			return 0, f.err
		}
		f.out, f.off = f.out[:0], 0
		if f.in == nil {
			// As large as the caller reads, up to 32 KiB: a small
			// answer, read at once into a buffer of its length, costs
			// no more than that.
			f.in = make([]byte, min(max(len(p), 512), 32<<10))
		}
		n, err := f.src.Read(f.in)
		f.scan(f.in[:n])
		if err == io.EOF && f.mode == hold {
			f.out = append(f.out, f.hold...) // a cut answer, passed on as cut
		}
		f.err = err
	}
	n := copy(p, f.out[f.off:])
	f.off += n
	return n, nil
}

func (f *resultFilter) scan(b []byte) {
	for i := 0; i < len(b); {
		if f.st == sPass {
			f.out = append(f.out, b[i:]...)
			return
		}
		if f.st == sString {
			// The bulk of a large value: a run of plain string bytes.
			j := i
			for j < len(b) && b[j] >= 0x20 && b[j] != '"' && b[j] != '\\' {
				j++
			}
			if j > i {
				f.keyBytes(b[i:j])
				f.put(b[i:j])
				i = j
				continue
			}
		}
		if f.st == sInt || f.st == sFrac || f.st == sExpDigit {
			// A run of digits, as in a large array of numbers.
			j := i
			for j < len(b) && '0' <= b[j] && b[j] <= '9' {
				j++
			}
			if j > i {
				f.put(b[i:j])
				i = j
				continue
			}
		}
		if !f.step(b[i]) {
			switch f.mode {
			case hold:
				f.out = append(f.out, f.hold...)
			case drop:
				f.out = append(f.out, droppedMark...)
			}
			f.mode, f.st = emit, sPass
			continue // b[i] on passes through
		}
		i++
	}
}

// put sends bytes of the answer where the current mode says.
func (f *resultFilter) put(b []byte) {
	switch f.mode {
	case emit:
		f.out = append(f.out, b...)
	case hold:
		if len(f.hold)+len(b) > f.holdMax {
			f.mode, f.hold = drop, f.hold[:0]
			return
		}
		f.hold = append(f.hold, b...)
	}
}

func (f *resultFilter) put1(c byte) {
	switch f.mode {
	case emit:
		f.out = append(f.out, c)
	case hold:
		if len(f.hold) == f.holdMax {
			f.mode, f.hold = drop, f.hold[:0]
			return
		}
		f.hold = append(f.hold, c)
	}
}

// keyBytes notes bytes of a top-level member's name, as written.
func (f *resultFilter) keyBytes(b []byte) {
	if !f.isKey || len(f.stack) != 1 || f.longKey {
		return
	}
	if len(f.key)+len(b) > maxKey {
		f.longKey, f.key = true, f.key[:0]
		return
	}
	f.key = append(f.key, b...)
}

// droppable reports whether the value of the member just named may be
// dropped when large: its name is none the client reads, read as
// encoding/json reads it (escapes undone, invalid UTF-8 replaced) and
// matched as it matches names to fields (ignoring case, Unicode folding
// included: ſ is s, the Kelvin sign k).
func (f *resultFilter) droppable() bool {
	if f.longKey {
		return true
	}
	name := string(f.key)
	if bytes.ContainsFunc(f.key, func(r rune) bool { return r == '\\' || r >= 0x80 }) {
		quoted := make([]byte, 0, len(f.key)+2)
		quoted = append(append(append(quoted, '"'), f.key...), '"')
		if json.Unmarshal(quoted, &name) != nil {
			return false // cannot happen: the name was checked
		}
	}
	for _, m := range resultMembers {
		if strings.EqualFold(name, m) {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// step takes one byte of an object answer; false when it is not JSON.
func (f *resultFilter) step(c byte) bool {
	switch f.st {
	case sBegin:
		switch {
		case isSpace(c):
			f.put1(c)
		case c == '{':
			f.put1(c)
			f.stack = append(f.stack, c)
			f.st = sObjKeyOrEnd
		default:
			return false // not an object: passed through
		}
	case sObjKeyOrEnd, sObjKey:
		switch {
		case isSpace(c):
			f.put1(c)
		case c == '"':
			f.put1(c)
			f.isKey, f.st = true, sString
			if len(f.stack) == 1 {
				f.key, f.longKey = f.key[:0], false
			}
		case c == '}' && f.st == sObjKeyOrEnd:
			f.put1(c)
			f.close()
		default:
			return false
		}
	case sColon:
		switch {
		case isSpace(c):
			f.put1(c)
		case c == ':':
			f.put1(c)
			f.st = sValue
		default:
			return false
		}
	case sValue, sArrValueOrEnd:
		switch {
		case isSpace(c):
			f.put1(c)
		case c == ']' && f.st == sArrValueOrEnd:
			f.put1(c)
			f.close()
		default:
			return f.begin(c)
		}
	case sAfterValue:
		top := f.stack[len(f.stack)-1]
		switch {
		case isSpace(c):
			f.put1(c)
		case c == ',':
			f.put1(c)
			f.st = sValue
			if top == '{' {
				f.st = sObjKey
			}
		case c == '}' && top == '{', c == ']' && top == '[':
			f.put1(c)
			f.close()
		default:
			return false
		}
	case sString: // scan takes the plain bytes, in runs
		switch {
		case c == '"':
			f.put1(c)
			if f.isKey {
				f.isKey, f.st = false, sColon
			} else {
				f.end()
			}
		case c == '\\':
			f.keyBytes([]byte{c})
			f.put1(c)
			f.st = sEscape
		default: // a control byte
			return false
		}
	case sEscape:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			f.st = sString
		case 'u':
			f.st, f.hexLeft = sHex, 4
		default:
			return false
		}
		f.keyBytes([]byte{c})
		f.put1(c)
	case sHex:
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
		f.keyBytes([]byte{c})
		f.put1(c)
		if f.hexLeft--; f.hexLeft == 0 {
			f.st = sString
		}
	case sLiteral:
		if c != f.lit[0] {
			return false
		}
		f.put1(c)
		if f.lit = f.lit[1:]; f.lit == "" {
			f.end()
		}
	default:
		return f.number(c)
	}
	return true
}

// begin starts a value with its first byte.
func (f *resultFilter) begin(c byte) bool {
	if len(f.stack) == 1 && f.droppable() {
		// A top-level member's value, which may be dropped: it is kept
		// if no larger than what is left for such values, so that
		// padding split into many members is not kept whole. Values of
		// up to len(droppedMark) bytes are kept: null would save little.
		f.mode, f.holdMax = hold, max(f.spare, len(droppedMark))
	}
	switch {
	case c == '{', c == '[':
		if len(f.stack) == maxDepth {
			return false
		}
		f.put1(c)
		f.stack = append(f.stack, c)
		f.st = sArrValueOrEnd
		if c == '{' {
			f.st = sObjKeyOrEnd
		}
		return true
	case c == '"':
		f.isKey, f.st = false, sString
	case c == '-':
		f.st = sNeg
	case c == '0':
		f.st = sZero
	case '1' <= c && c <= '9':
		f.st = sInt
	case c == 't':
		f.st, f.lit = sLiteral, "rue"
	case c == 'f':
		f.st, f.lit = sLiteral, "alse"
	case c == 'n':
		f.st, f.lit = sLiteral, "ull"
	default:
		return false
	}
	f.put1(c)
	return true
}

// number takes a byte in a number; one that cannot continue it ends it and
// is taken by what follows.
func (f *resultFilter) number(c byte) bool {
	digit := '0' <= c && c <= '9'
	next := f.st
	switch {
	case f.st == sNeg && c == '0':
		next = sZero
	case f.st == sNeg && digit:
		next = sInt
	case (f.st == sInt || f.st == sFrac || f.st == sExpDigit) && digit:
	case (f.st == sZero || f.st == sInt) && c == '.':
		next = sDot
	case (f.st == sDot) && digit:
		next = sFrac
	case (f.st == sZero || f.st == sInt || f.st == sFrac) && (c == 'e' || c == 'E'):
		next = sExp
	case f.st == sExp && (c == '+' || c == '-'):
		next = sExpSign
	case (f.st == sExp || f.st == sExpSign) && digit:
		next = sExpDigit
	case f.st == sZero || f.st == sInt || f.st == sFrac || f.st == sExpDigit:
		f.end() // a complete number
		return f.step(c)
	default:
		return false
	}
	f.put1(c)
	f.st = next
	return true
}

// close ends the innermost container, whose closing byte was put.
func (f *resultFilter) close() {
	f.stack = f.stack[:len(f.stack)-1]
	f.end()
}

// end follows a complete value.
func (f *resultFilter) end() {
	switch len(f.stack) {
	case 0: // the answer's object: what follows passes through
		f.st = sPass
		return
	case 1: // a top-level member's value
		switch f.mode {
		case hold:
			f.out = append(f.out, f.hold...)
			f.spare -= len(f.hold)
			f.hold = f.hold[:0]
		case drop:
			f.out = append(f.out, "null"...)
			f.dropped++
		}
		f.mode = emit
	}
	f.st = sAfterValue
}
