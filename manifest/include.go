package manifest

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// bom is the byte order mark spreadsheet programs put at the start of UTF-8 files.
var bom = []byte("\uFEFF")

// includes reads the files listed under include, in order.
func (p *parser) includes(n *yaml.Node) {
	r := resolve(n)
	if r.Kind != yaml.SequenceNode {
		p.fail(p.at(n), "", "include", fmt.Sprintf("must be a list of file paths and {files: GLOB, as: FIELD} entries, not %s", describe(r)))
		return
	}
	for i, item := range r.Content {
		if resolve(item).Kind == yaml.MappingNode {
			p.folder(item, i+1)
			continue
		}
		rel, ok := p.text(item, "", "include")
		if !ok {
			continue
		}
		at := p.at(item)
		// Absolute paths would make a manifest work on one machine only.
		if filepath.IsAbs(rel) || strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, `\`) {
			p.fail(at, "", "include", fmt.Sprintf("%s: use a path relative to the manifest", rel))
			continue
		}
		ext := strings.ToLower(filepath.Ext(rel))
		if ext != ".csv" && ext != ".jsonl" {
			p.fail(at, "", "include", fmt.Sprintf("%s: can only include .csv and .jsonl files", rel))
			continue
		}
		path := filepath.Join(p.m.Dir, rel)
		p.m.Includes = append(p.m.Includes, path)
		if err := p.include(path, ext); err != nil {
			p.fail(at, "", "include", fmt.Sprintf("cannot read %s: %s", path, reason(err)))
		}
	}
}

// include reads one included file as a stream, so that a file of 100,000
// rows is never held whole, only the jobs made from it. A first pass counts
// the rows, so that the job list is sized once rather than copied as it
// grows.
func (p *parser) include(path, ext string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, size, err := countRows(f)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	p.volume += 10 * int(min(size, math.MaxInt32))
	if room := p.maxJobs - len(p.m.Jobs); room > 0 {
		p.m.Jobs = slices.Grow(p.m.Jobs, min(rows, room))
	}
	r := bufio.NewReaderSize(f, 64<<10)
	if b, _ := r.Peek(len(bom)); bytes.Equal(b, bom) {
		r.Discard(len(bom))
	}
	if ext == ".csv" {
		p.csvFile(path, r)
	} else {
		p.jsonlFile(path, r)
	}
	return nil
}

// countRows counts the lines that hold more than blanks and commas (a CSV
// row or a JSONL line), and the bytes.
func countRows(f io.Reader) (rows int, size int64, err error) {
	r := bufio.NewReaderSize(f, 64<<10)
	filled := false // the line read so far holds a row
	for {
		chunk, err := r.ReadSlice('\n')
		size += int64(len(chunk))
		filled = filled || len(bytes.Trim(chunk, " \t\r\n,")) > 0
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == nil || err == io.EOF:
			if filled {
				rows++
			}
			filled = false
			if err == io.EOF {
				return rows, size, nil
			}
		default:
			return rows, size, err
		}
	}
}

// csvFile reads one job per row; the header names the input fields, except
// the optional id and model columns.
func (p *parser) csvFile(file string, in io.Reader) {
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1 // a ragged row is checked here, as one error, not the end of the file
	header, err := r.Read()
	if err != nil {
		if err == io.EOF {
			p.fail(Pos{File: file}, "", "", "the CSV file is empty; it needs a header row naming the input fields")
		} else {
			p.csvError(file, err)
		}
		return
	}
	cols := make([]string, len(header))
	seen := make(map[string]bool, len(header))
	ok := true
	for i, h := range header {
		line, col := r.FieldPos(i)
		at := Pos{File: file, Line: line, Col: col}
		name := strings.TrimSpace(h)
		switch {
		case name == "":
			p.fail(at, "", "", fmt.Sprintf("column %d has no name in the header", i+1))
			ok = false
		case !utf8.ValidString(name):
			p.fail(at, "", "", fmt.Sprintf("column %d: name is not valid UTF-8", i+1))
			ok = false
		case seen[name]:
			p.fail(at, "", name, "column appears twice in the header")
			ok = false
		}
		seen[name], cols[i] = true, name
	}
	if !ok {
		return // rows cannot be read without knowing their columns
	}
	idCol, modelCol := slices.Index(cols, "id"), slices.Index(cols, "model")
	for row := 1; ; row++ {
		rec, err := r.Read()
		if err == io.EOF {
			return
		}
		if err != nil {
			p.csvError(file, err) // after a quoting error the rest of the file cannot be trusted
			return
		}
		at := func(i int) Pos {
			line, col := r.FieldPos(i)
			return Pos{File: file, Line: line, Col: col}
		}
		d := draft{ref: "#" + strconv.Itoa(row), at: at(0)}
		if len(rec) != len(cols) {
			p.entries++
			p.fail(d.at, d.ref, "", fmt.Sprintf("row has %d fields; the header has %d", len(rec), len(cols)))
			continue
		}
		if !slices.ContainsFunc(rec, func(s string) bool { return s != "" }) {
			continue // spreadsheets leave rows of bare commas behind
		}
		p.entries++
		p.csvRow(d, cols, rec, idCol, modelCol, at)
	}
}

func (p *parser) csvRow(d draft, cols, rec []string, idCol, modelCol int, at func(int) Pos) {
	before := len(p.errs)
	for i, cell := range rec {
		if !utf8.ValidString(cell) {
			p.fail(at(i), d.ref, cols[i], "not valid UTF-8")
			rec[i] = ""
		}
	}
	if idCol >= 0 && rec[idCol] != "" {
		if id := rec[idCol]; ValidID(id) {
			d.id, d.idAt, d.ref = id, at(idCol), id
		} else {
			p.fail(at(idCol), d.ref, "id", badID(id))
		}
	}
	d.model = p.m.Model
	if modelCol >= 0 && rec[modelCol] != "" {
		d.model = rec[modelCol]
	}
	if d.model == "" && !p.modelBad {
		p.fail(d.at, d.ref, "model", "no model: fill the model column or set model at the top of the manifest")
	}
	d.input = make(map[string]any, len(cols))
	d.fieldPos = make(map[string]Pos, len(cols))
	for i, name := range cols {
		if i == idCol || i == modelCol || rec[i] == "" {
			continue // an empty cell leaves the field to the defaults
		}
		v, err := convertCell(p.fieldType(d.model, name), rec[i])
		if err != nil {
			p.fail(at(i), d.ref, name, err.Error())
			continue
		}
		d.input[name], d.fieldPos[name] = v, at(i)
	}
	if len(p.errs) > before {
		if d.id != "" {
			p.claim(d.id, d.idAt, nil, false)
		}
		return
	}
	p.add(d, nil)
}

func (p *parser) csvError(file string, err error) {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		p.fail(Pos{File: file, Line: pe.Line, Col: pe.Column}, "", "", "CSV syntax: "+pe.Err.Error())
		return
	}
	p.fail(Pos{File: file}, "", "", "CSV: "+err.Error())
}

// fieldType asks Options.FieldType once per model and field.
func (p *parser) fieldType(model, field string) string {
	if p.opts.FieldType == nil {
		return ""
	}
	key := [2]string{model, field}
	t, ok := p.fieldTypes[key]
	if !ok {
		t = p.opts.FieldType(model, field)
		if p.fieldTypes == nil {
			p.fieldTypes = make(map[[2]string]string)
		}
		p.fieldTypes[key] = t
	}
	return t
}

// convertCell turns CSV text into the JSON type the schema asks for. Text
// for numbers and booleans may carry spaces around it; strings are kept
// exactly as written.
func convertCell(typ, s string) (any, error) {
	t := strings.TrimSpace(s)
	switch typ {
	case "integer":
		if i, err := strconv.ParseInt(t, 10, 64); err == nil {
			return i, nil
		}
		// "5.0" is an integer to JSON Schema, and spreadsheets write it.
		if f, err := strconv.ParseFloat(t, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return int64(f), nil
		}
		return nil, fmt.Errorf("%q is not an integer", s)
	case "number":
		if i, err := strconv.ParseInt(t, 10, 64); err == nil {
			return i, nil
		}
		if f, err := strconv.ParseFloat(t, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return zeroSign(f), nil
		}
		return nil, fmt.Errorf("%q is not a number", s)
	case "boolean":
		if b, err := strconv.ParseBool(t); err == nil {
			return b, nil
		}
		return nil, fmt.Errorf("%q is not a boolean; use true or false", s)
	case "array", "object":
		v, _, err := readJSON([]byte(s))
		if err == nil {
			_, isArray := v.([]any)
			_, isObject := v.(map[string]any)
			if typ == "array" && isArray || typ == "object" && isObject {
				return v, nil
			}
		}
		return nil, fmt.Errorf("%q is not a JSON %s", s, typ)
	default:
		return s, nil
	}
}

// jsonlFile reads one job per line, {"id"?, "model"?, "input"}; blank lines
// are skipped.
func (p *parser) jsonlFile(file string, r *bufio.Reader) {
	count := 0
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadBytes('\n')
		if err != nil && err != io.EOF {
			p.fail(Pos{File: file, Line: lineNo}, "", "", "cannot read: "+reason(err))
			return
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(bytes.TrimSpace(line)) > 0 {
			count++
			p.entries++
			p.jsonlLine(file, lineNo, count, line)
		}
		if err == io.EOF {
			return
		}
	}
}

func (p *parser) jsonlLine(file string, lineNo, count int, line []byte) {
	at := func(off int) Pos { return Pos{File: file, Line: lineNo, Col: off + 1} }
	start := len(line) - len(bytes.TrimLeft(line, " \t"))
	d := draft{ref: "#" + strconv.Itoa(count), at: at(start)}
	before := len(p.errs)
	v, members, err := readJSON(line)
	if err != nil {
		p.fail(at(err.off), d.ref, "", "JSON: "+err.msg)
		return
	}
	if _, ok := v.(map[string]any); !ok {
		p.fail(d.at, d.ref, "", "each line must be a JSON object with id, model and input")
		return
	}
	var model, input *member
	for i := range members {
		m := &members[i]
		switch m.key {
		case "id":
			if id, ok := m.val.(string); !ok {
				p.fail(at(m.off), d.ref, "id", "must be a string")
			} else if !ValidID(id) {
				p.fail(at(m.off), d.ref, "id", badID(id))
			} else {
				d.id, d.idAt, d.ref = id, at(m.off), id
			}
		case "model":
			model = m
		case "input":
			input = m
		}
	}
	for _, m := range members {
		if m.key != "id" && m.key != "model" && m.key != "input" {
			p.fail(at(m.keyOff), d.ref, m.key, "unknown key; expected id, model or input")
		}
	}
	d.model = p.m.Model
	if model != nil {
		if s, ok := model.val.(string); ok && strings.TrimSpace(s) != "" {
			d.model = s
		} else {
			p.fail(at(model.off), d.ref, "model", "must be a non-empty string")
		}
	} else if d.model == "" && !p.modelBad {
		p.fail(d.at, d.ref, "model", "no model: set model on the line or at the top of the manifest")
	}
	if input == nil {
		p.fail(d.at, d.ref, "input", "missing: each line needs an input object")
	} else if fields, ok := input.val.(map[string]any); !ok {
		p.fail(at(input.off), d.ref, "input", "must be a JSON object")
	} else {
		d.input = fields
		d.fieldPos = make(map[string]Pos, len(input.sub))
		for _, m := range input.sub {
			d.fieldPos[m.key] = at(m.off)
		}
	}
	if len(p.errs) > before {
		if d.id != "" {
			p.claim(d.id, d.idAt, nil, false)
		}
		return
	}
	p.add(d, nil)
}
