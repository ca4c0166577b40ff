// Package manifest reads a comfybatch manifest (SPEC §3): a YAML file and
// the CSV and JSONL files it includes, turned into a flat list of jobs with
// stable ids and fingerprints. It checks everything a manifest can get wrong
// by itself and reports all of it at once, with file, line and column; model
// schemas are someone else's business, reached through Options.
package manifest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"comfybatch/localfile"
)

// DefaultMaxJobs is the most jobs a manifest may produce unless
// Options.MaxJobs says otherwise: ten times the largest batches comfybatch is
// built for, and a stop for a small matrix that multiplies into millions.
const DefaultMaxJobs = 1_000_000

// Job is one generation request, ready to validate and submit.
type Job struct {
	ID    string
	Model string
	// Input is the job's input merged over the manifest's defaults, matrix
	// values on top, as canonical JSON: keys sorted, integral numbers written
	// as integers. It is the body's input as sent and what the fingerprint
	// hashes; Values decodes it. Bytes rather than maps, because a map per
	// job is most of the memory of a 100,000-job manifest.
	Input json.RawMessage
	Pos   Pos // the list item, CSV row or JSONL line that defines the job

	fp [32]byte // sha256 of the canonical JSON of {"model", "input"}

	own    []fieldAt // where the job's own fields are written, in Pos.File
	places *places   // shared by the manifest's jobs
}

// fieldAt is where one top-level input field of a job is written: 12 bytes,
// the name an index into places.names.
type fieldAt struct {
	name      uint32
	line, col int32
}

// places is what a manifest's jobs share to say where their fields are.
type places struct {
	names    []string       // the top-level input fields' names, each once
	defaults map[string]Pos // where the defaults are written
}

// Fingerprint is the hex sha256 of the canonical JSON of {"model", "input"}:
// the ledger compares it to tell a changed job. Kept as bytes, and spelt out
// only when asked, because 64 hex characters a job add up at 100,000 jobs.
func (j *Job) Fingerprint() string { return hex.EncodeToString(j.fp[:]) }

// FieldPos says where the value of a top-level input field is written: in the
// job itself, or in the manifest's defaults.
func (j *Job) FieldPos(field string) (Pos, bool) {
	if j.places == nil {
		return Pos{}, false
	}
	for _, f := range j.own {
		if j.places.names[f.name] == field {
			return Pos{File: j.Pos.File, Line: int(f.line), Col: int(f.col)}, true
		}
	}
	at, ok := j.places.defaults[field]
	return at, ok
}

// FromDefaults reports whether a top-level input field's value comes from
// the manifest's defaults rather than from the job itself.
func (j *Job) FromDefaults(field string) bool {
	if j.places == nil {
		return false
	}
	for _, f := range j.own {
		if j.places.names[f.name] == field {
			return false
		}
	}
	_, ok := j.places.defaults[field]
	return ok
}

// Values decodes Input: strings, bools, nil, int64 for integers, float64 for
// other numbers, []any and map[string]any, as the manifest read them.
func (j *Job) Values() (map[string]any, error) {
	return decodeInput(j.Input)
}

// Manifest is a parsed, valid manifest.
type Manifest struct {
	File      string
	Dir       string
	Model     string // default model; "" when absent
	ModelPos  Pos    // where the default model is written
	OutputDir string // output.dir resolved against Dir, or a bucket URL as written; "" when absent
	// Upload is the bucket local input files go to (the manifest's upload,
	// as `run --upload`); "" sends them inline.
	Upload   string
	Defaults map[string]any
	Jobs     []Job    // in file order; included jobs after the YAML ones, in include order
	Includes []string // the included files' paths, in include order
	// Files are the local files the jobs' inputs name (localfile), each
	// once, as read; Globs the patterns of the folder includes, joined to
	// Dir: what decides the jobs besides the manifest and its includes.
	Files []string
	Globs []string

	byID []int32 // indexes of Jobs sorted by id, for Job
}

// Job finds a job by id.
func (m *Manifest) Job(id string) (*Job, bool) {
	i, ok := slices.BinarySearchFunc(m.byID, id, func(k int32, id string) int { return strings.Compare(m.Jobs[k].ID, id) })
	if !ok {
		return nil, false
	}
	return &m.Jobs[m.byID[i]], true
}

// ByID lists the jobs in increasing id order (byte order, as SQLite's),
// each with its index in Jobs.
func (m *Manifest) ByID() iter.Seq2[int, *Job] {
	return func(yield func(int, *Job) bool) {
		for _, i := range m.byID {
			if !yield(int(i), &m.Jobs[i]) {
				return
			}
		}
	}
}

// index sorts the jobs by id and reports whether every id is unique. A sorted
// list instead of a map: a map of 100,000 ids costs megabytes the run keeps.
func (m *Manifest) index() bool {
	m.byID = make([]int32, len(m.Jobs))
	for i := range m.byID {
		m.byID[i] = int32(i)
	}
	slices.SortFunc(m.byID, func(a, b int32) int { return strings.Compare(m.Jobs[a].ID, m.Jobs[b].ID) })
	for i := 1; i < len(m.byID); i++ {
		if m.Jobs[m.byID[i-1]].ID == m.Jobs[m.byID[i]].ID {
			return false
		}
	}
	return true
}

// Options carries what the manifest cannot know by itself.
type Options struct {
	// FieldType, when set, gives the JSON type ("string", "integer",
	// "number", "boolean", "array", "object", or "" when unknown) that a
	// model's schema gives a top-level input field. CSV cells are converted
	// with it ("5" → 5, "true" → true); without it they stay strings.
	FieldType func(model, field string) string
	// MaxJobs caps the number of jobs; 0 means DefaultMaxJobs.
	MaxJobs int
}

// Load reads the manifest at path and the files it includes. A large jobs
// list is read from the file a group of entries at a time, so the file is
// never held whole while its jobs are made.
func Load(path string, opts Options) (*Manifest, error) {
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		var st os.FileInfo
		if st, err = f.Stat(); err == nil && st.Mode().IsRegular() {
			return parse(path, file{f: f, n: int(min(st.Size(), math.MaxInt32))}, opts)
		}
		if err == nil { // a pipe or a device: read once, as it cannot be read again
			var data []byte
			if data, err = io.ReadAll(f); err == nil {
				return Parse(path, data, opts)
			}
		}
	}
	return nil, Errors{{Pos: Pos{File: path}, Msg: "cannot read manifest: " + reason(err)}}
}

// Parse parses a manifest held in memory; file names it in errors, and its
// includes are read relative to filepath.Dir(file). Any problem is reported
// as Errors, all of them at once; the Manifest returned with them holds the
// jobs that had none, so that a caller can check those further and report
// everything in one go. It must not be run.
func Parse(file string, data []byte, opts Options) (*Manifest, error) {
	return parse(file, memory(data), opts)
}

func parse(file string, src source, opts Options) (*Manifest, error) {
	if m, ok := parseFast(file, src, opts, groupEntries); ok {
		return m, nil
	}
	// Problems are found and reported by reading the whole document, the
	// way it reads, with every id checked as it is handed out.
	data, err := src.bytes()
	if err != nil {
		return nil, Errors{{Pos: Pos{File: file}, Msg: "cannot read manifest: " + reason(err)}}
	}
	return parseWhole(file, data, opts)
}

// parseFast reads a manifest that has no problems with as little memory as
// it can: the jobs list a group of entries at a time when its text allows
// (split.go), and ids checked for clashes once, at the end, by sorting. It
// reports false when the file has any problem, which parseWhole then reports.
func parseFast(file string, src source, opts Options, per int) (*Manifest, bool) {
	p := newParser(file, src.size(), opts) // ids are checked at the end, by index
	jt, split, err := splitJobs(src, per)
	switch {
	case err != nil:
		return nil, false
	case split:
		p.split = jt
		p.parse(jt.rest)
	default:
		data, err := src.bytes()
		if err != nil {
			return nil, false
		}
		p.parse(data)
	}
	if len(p.errs) > 0 || p.splitWrong || !p.m.index() {
		return nil, false
	}
	return p.m, true
}

func parseWhole(file string, data []byte, opts Options) (*Manifest, error) {
	p := newParser(file, len(data), opts)
	p.ids = make(map[string]idUse) // each id checked as it is handed out, to report where it was first used
	p.parse(data)
	if len(p.errs) > 0 {
		p.errs.sort()
		p.m.index()
		return p.m, p.errs
	}
	if !p.m.index() { // every id was claimed once
		return nil, Errors{{Pos: Pos{File: file}, Msg: "internal error: a job id is used twice"}}
	}
	return p.m, nil
}

func newParser(file string, size int, opts Options) *parser {
	p := &parser{
		opts:      opts,
		maxJobs:   opts.MaxJobs,
		file:      file,
		m:         &Manifest{File: file, Dir: filepath.Dir(file), Defaults: map[string]any{}},
		expanding: make(map[*yaml.Node]bool),
		places:    &places{},
		nameIndex: make(map[string]uint32),
		budget:    1_000_000 + 10*size,
	}
	if p.maxJobs <= 0 {
		p.maxJobs = DefaultMaxJobs
	}
	p.volume = 64*p.maxJobs + 10*size
	return p
}

// parser holds the state of one Parse call.
type parser struct {
	opts    Options
	maxJobs int
	file    string
	m       *Manifest
	errs    Errors

	places    *places           // what the jobs share
	nameIndex map[string]uint32 // places.names by name
	modelBad  bool              // the top-level model is present but wrong: don't blame every job for it
	ids       map[string]idUse  // every id handed out so far; nil when Manifest.index checks them
	entries   int               // job entries seen (list items, CSV rows, JSONL lines), broken ones too
	capHit    bool

	budget      int                 // YAML value nodes still allowed to be converted
	budgetSpent bool                // the budget error was reported
	expanding   map[*yaml.Node]bool // anchors being expanded right now, to catch cycles

	// volume is how many more values the jobs may hold between them. A
	// matrix multiplies the defaults and the job's input; this bounds the
	// product at 64 values a job on average, plus whatever the files spell out.
	volume      int
	volumeSpent bool

	fieldTypes map[[2]string]string     // Options.FieldType answers, which may be costly
	locals     map[string]localfile.Ref // local files read so far, by path as written

	root       *yaml.Node // the document parsed
	split      *jobsText  // the jobs list, parsed group by group (split.go)
	splitWrong bool       // the split did not hold: parse the whole document
	lineOff    int        // added to node lines: where the group being read starts
}

// idUse is where an id was first used; one per job, so kept small.
type idUse struct {
	id        string // as written (the map's key is folded to lower case)
	file      string
	line, col int32
	job       int32 // index in m.Jobs; -1 for an explicit id of a job that had errors
	derived   bool
}

func (u idUse) at() Pos { return Pos{File: u.file, Line: int(u.line), Col: int(u.col)} }

// draft is a job as written, before defaults, matrix and id derivation.
type draft struct {
	id       string // explicit id; "" derives one from the fingerprint
	idAt     Pos
	ref      string // how errors name the job: its id, or "#N" while it has none
	model    string
	input    map[string]any
	fieldPos map[string]Pos
	at       Pos
}

// axis is one field of a matrix and the values it takes.
type axis struct {
	field  string
	values []any
	at     []Pos
	parts  []string // each value as it appears in ids
}

func (p *parser) fail(at Pos, job, field, msg string) {
	p.errs = append(p.errs, &Error{Pos: at, JobID: job, Field: field, Msg: msg})
}

func (p *parser) at(n *yaml.Node) Pos {
	return Pos{File: p.file, Line: n.Line + p.lineOff, Col: n.Column}
}

func (p *parser) parse(data []byte) {
	doc, ok := p.document(data)
	if !ok {
		return
	}
	root := resolve(doc)
	p.root = root
	if root.Kind != yaml.MappingNode {
		p.fail(p.at(root), "", "", fmt.Sprintf("a manifest is a mapping of version, model, output, defaults, jobs and include, not %s", describe(root)))
		return
	}
	var jobs, include *pair
	entries := p.pairs(root, "", "")
	for i, e := range entries {
		switch e.key {
		case "version":
			p.version(e.val)
		case "model":
			if s, ok := p.text(e.val, "", "model"); ok {
				p.m.Model, p.m.ModelPos = s, e.valueAt
			} else {
				p.modelBad = true
			}
		case "output":
			p.output(e.val)
		case "upload":
			if u, ok := p.text(e.val, "", "upload"); ok {
				if !isBucketURL(u) {
					p.fail(p.at(e.val), "", "upload", "must be a bucket URL: s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or azblob://CONTAINER/PREFIX")
				} else {
					p.m.Upload = u
				}
			}
		case "defaults":
			p.defaults(e.val)
		case "jobs":
			jobs = &entries[i]
		case "include":
			include = &entries[i]
		default:
			p.fail(p.at(e.keyNode), "", e.key, "unknown key; expected version, model, output, upload, defaults, jobs or include")
		}
	}
	before := len(p.errs)
	switch {
	case p.split != nil && jobs == nil:
		p.splitWrong = true
		return
	case p.split != nil:
		if !p.groups(jobs) {
			p.splitWrong = true
			return
		}
	case jobs != nil:
		p.jobs(jobs.val)
	}
	if include != nil {
		p.includes(include.val)
	}
	// An empty list is the problem only when nothing else went wrong there.
	if p.entries == 0 && len(p.errs) == before {
		at := Pos{File: p.file}
		if jobs != nil {
			at = p.at(jobs.keyNode)
		}
		p.fail(at, "", "jobs", "the manifest has no jobs; list them under jobs or include a CSV or JSONL file")
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses the YAML text into one document node, reporting syntax
// errors at the line yaml.v3 gives.
func (p *parser) document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	err := decode(dec, &doc)
	if err == nil {
		err = decode(dec, &extra)
		if err == nil {
			p.fail(p.at(&extra), "", "", "a manifest holds a single YAML document; remove the second one")
			return nil, false
		}
		if err == io.EOF && len(doc.Content) == 1 {
			return doc.Content[0], true
		}
	}
	if err == io.EOF {
		p.fail(Pos{File: p.file}, "", "", "the manifest is empty; it needs at least a jobs list or an include")
		return nil, false
	}
	at, msg := Pos{File: p.file}, strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		at.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
		// yaml.v3 reports its parser's errors ("did not find expected …")
		// at the 0-based line of the construct left open; its scanner's
		// errors are 1-based already.
		if strings.HasPrefix(msg, "did not find expected") {
			at.Line++
		}
		line, col, why := syntaxAt(data, at.Line, msg)
		switch {
		case line != at.Line || why != msg:
			at.Line, at.Col, msg = line, col, why
		case strings.HasPrefix(msg, "did not find expected"):
			msg += " (in the value that starts on this line)"
		}
	}
	p.fail(at, "", "", "YAML syntax: "+msg)
	return nil, false
}

// decode wraps yaml.v3's Decode so that a panic inside the library becomes
// an error: a malformed file must never bring the caller down.
func decode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

func (p *parser) version(n *yaml.Node) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		if v, err := strconv.ParseInt(n.Value, 0, 64); err == nil && v == 1 {
			return
		}
	}
	msg := fmt.Sprintf("must be the number 1, not %s", describe(n))
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		msg = fmt.Sprintf("unsupported version %s; this comfybatch reads version 1", n.Value)
	}
	p.fail(p.at(n), "", "version", msg)
}

// text reads a non-empty string: a model, an id, an include path.
func (p *parser) text(n *yaml.Node, job, field string) (string, bool) {
	r := resolve(n)
	if r.Kind != yaml.ScalarNode || r.ShortTag() != "!!str" {
		p.fail(p.at(n), job, field, fmt.Sprintf("must be a string, not %s", describe(r)))
		return "", false
	}
	if strings.TrimSpace(r.Value) == "" {
		p.fail(p.at(n), job, field, "must not be empty")
		return "", false
	}
	return r.Value, true
}

func (p *parser) output(n *yaml.Node) {
	r := resolve(n)
	if r.Kind != yaml.MappingNode {
		p.fail(p.at(n), "", "output", fmt.Sprintf("must be a mapping with dir, not %s", describe(r)))
		return
	}
	for _, e := range p.pairs(r, "output", "") {
		if e.key != "dir" {
			p.fail(p.at(e.keyNode), "", e.fieldFor, "unknown key; expected dir")
			continue
		}
		if dir, ok := p.text(e.val, "", e.fieldFor); ok {
			if isBucketURL(dir) {
				p.m.OutputDir = dir // s3://, gs://, azblob://, file:// (outstore)
			} else if filepath.IsAbs(dir) {
				p.m.OutputDir = filepath.Clean(dir)
			} else {
				p.m.OutputDir = filepath.Join(p.m.Dir, dir)
			}
		}
	}
}

// isBucketURL tells a bucket URL from a folder as outstore.IsURL does; it
// is repeated here so that the manifest does not build the cloud clients.
func isBucketURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	return ok && scheme != "" && !strings.ContainsAny(scheme, `/\.`)
}

func (p *parser) defaults(n *yaml.Node) {
	r := resolve(n)
	if r.Kind != yaml.MappingNode {
		p.fail(p.at(n), "", "defaults", fmt.Sprintf("must be a mapping of input fields, not %s", describe(r)))
		return
	}
	p.m.Defaults, p.places.defaults = p.fields(r, "defaults", "")
}

func (p *parser) jobs(n *yaml.Node) {
	r := resolve(n)
	if r.Kind != yaml.SequenceNode {
		p.fail(p.at(n), "", "jobs", fmt.Sprintf("must be a list of jobs, not %s", describe(r)))
		return
	}
	for i, item := range r.Content {
		p.entries++
		p.yamlJob(item, i+1)
	}
}

// yamlJob reads one entry of the jobs list.
func (p *parser) yamlJob(item *yaml.Node, index int) {
	d := draft{ref: "#" + strconv.Itoa(index), at: p.at(item)}
	n := resolve(item)
	if n.Kind != yaml.MappingNode {
		p.fail(d.at, d.ref, "", fmt.Sprintf("a job is a mapping with id, model, input and matrix, not %s", describe(n)))
		return
	}
	before := len(p.errs)
	// The id comes first so that every other error can name the job by it.
	if idNode := lookup(n, "id"); idNode != nil {
		if id, ok := p.text(idNode, d.ref, "id"); ok {
			if ValidID(id) {
				d.id, d.idAt, d.ref = id, p.at(idNode), id
			} else {
				p.fail(p.at(idNode), d.ref, "id", badID(id))
			}
		}
	}
	var modelNode, inputNode, matrixNode *yaml.Node
	for _, e := range p.pairs(n, "", d.ref) {
		switch e.key {
		case "id":
		case "model":
			modelNode = e.val
		case "input":
			inputNode = e.val
		case "matrix":
			matrixNode = e.val
		default:
			p.fail(p.at(e.keyNode), d.ref, e.key, "unknown key; expected id, model, input or matrix")
		}
	}
	d.model = p.m.Model
	if modelNode != nil {
		d.model, _ = p.text(modelNode, d.ref, "model")
	} else if d.model == "" && !p.modelBad {
		p.fail(d.at, d.ref, "model", "no model: set model on the job or at the top of the manifest")
	}
	switch {
	case inputNode != nil:
		if in := resolve(inputNode); in.Kind == yaml.MappingNode {
			d.input, d.fieldPos = p.fields(in, "input", d.ref)
		} else {
			p.fail(p.at(inputNode), d.ref, "input", fmt.Sprintf("must be a mapping of input fields, not %s", describe(in)))
		}
	case matrixNode == nil:
		p.fail(d.at, d.ref, "input", "missing: a job needs an input (or a matrix)")
	}
	var axes []axis
	if matrixNode != nil {
		axes = p.matrix(matrixNode, d.ref, d.id != "")
	}
	if len(p.errs) > before {
		// Keep the id taken, so that a later job reusing it is still told.
		if d.id != "" {
			p.claim(d.id, d.idAt, nil, false)
		}
		return
	}
	p.add(d, axes)
}

// matrix reads "field: [values...]" entries, in the order written. named
// says whether the values will appear in ids.
func (p *parser) matrix(n *yaml.Node, job string, named bool) []axis {
	r := resolve(n)
	if r.Kind != yaml.MappingNode {
		p.fail(p.at(n), job, "matrix", fmt.Sprintf("must be a mapping of field: [values], not %s", describe(r)))
		return nil
	}
	if len(r.Content) == 0 {
		p.fail(p.at(n), job, "matrix", "is empty; give at least one field and its values")
		return nil
	}
	var axes []axis
	for _, e := range p.pairs(r, "matrix", job) {
		seq := resolve(e.val)
		if seq.Kind != yaml.SequenceNode || len(seq.Content) == 0 {
			p.fail(e.valueAt, job, e.fieldFor, "must be a non-empty list of values")
			continue
		}
		a := axis{field: e.key}
		seen := make(map[string]int, len(seq.Content))     // canonical value -> line
		parts := make(map[string]string, len(seq.Content)) // id part -> the value that has it
		for i, c := range seq.Content {
			at := p.at(c)
			if resolve(c).Kind != yaml.ScalarNode {
				p.fail(at, job, e.fieldFor, fmt.Sprintf("matrix values must be scalars, not %s", describe(c)))
				continue
			}
			v := p.value(c, fmt.Sprintf("%s[%d]", e.fieldFor, i), job, 1)
			key := canonicalKey(v)
			if line, dup := seen[key]; dup {
				p.fail(at, job, e.fieldFor, fmt.Sprintf("duplicate value %s (also on line %d)", show(v), line))
				continue
			}
			part := idPart(render(v))
			if other, dup := parts[part]; dup && named {
				// 1 and "1" are different inputs but would get the same id.
				p.fail(at, job, e.fieldFor, fmt.Sprintf("value %s would get the same id as %s", show(v), other))
				continue
			}
			seen[key], parts[part] = at.Line, fmt.Sprintf("%s (line %d)", show(v), at.Line)
			a.values = append(a.values, v)
			a.at = append(a.at, at)
			a.parts = append(a.parts, part)
		}
		axes = append(axes, a)
	}
	return axes
}

// show writes a value for a message: strings quoted, so that "1" and 1 differ.
func show(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return render(v)
}

// canonicalKey tells matrix values apart the way the fingerprint does: 5 and
// 5.0 are the same value, 5 and "5" are not.
func canonicalKey(v any) string {
	if s, ok := v.(string); ok {
		return "s" + s
	}
	return "j" + render(v)
}

// add turns a draft into jobs: defaults under its input, then one job per
// matrix combination (the last field varies fastest), or just the one job.
func (p *parser) add(d draft, axes []axis) {
	input := make(map[string]any, len(p.m.Defaults)+len(d.input)+len(axes))
	maps.Copy(input, p.m.Defaults)
	maps.Copy(input, d.input)
	own := make([]fieldAt, 0, len(d.fieldPos)+len(axes))
	for _, k := range slices.Sorted(maps.Keys(d.fieldPos)) {
		own = p.setField(own, k, d.fieldPos[k])
	}
	if len(axes) == 0 {
		p.emit(d, input, own, d.id, false)
		return
	}
	idx := make([]int, len(axes))
	for {
		// emit keeps neither the map nor the slice, so both are reused.
		pos := slices.Clone(own)
		var id strings.Builder
		if d.id != "" {
			id.WriteString(d.id)
		}
		for k, a := range axes {
			input[a.field], pos = a.values[idx[k]], p.setField(pos, a.field, a.at[idx[k]])
			if d.id != "" {
				fmt.Fprintf(&id, ".%s-%s", idPart(a.field), a.parts[idx[k]])
			}
		}
		if !p.emit(d, input, pos, id.String(), true) {
			return
		}
		k := len(axes) - 1
		for ; k >= 0; k-- {
			if idx[k]++; idx[k] < len(axes[k].values) {
				break
			}
			idx[k] = 0
		}
		if k < 0 {
			return
		}
	}
}

// setField records where field is written, replacing an earlier place.
func (p *parser) setField(own []fieldAt, field string, at Pos) []fieldAt {
	name, ok := p.nameIndex[field]
	if !ok {
		name = uint32(len(p.places.names))
		p.places.names = append(p.places.names, field)
		p.nameIndex[field] = name
	}
	f := fieldAt{name: name, line: int32(min(at.Line, math.MaxInt32)), col: int32(min(at.Col, math.MaxInt32))}
	for i := range own {
		if own[i].name == name {
			own[i] = f
			return own
		}
	}
	return append(own, f)
}

// emit finishes one job: its input encoded, its fingerprint and id. It keeps
// neither input nor own. It returns false when no more jobs should be made
// from the same draft.
func (p *parser) emit(d draft, input map[string]any, own []fieldAt, id string, fromMatrix bool) bool {
	if len(p.m.Jobs) >= p.maxJobs {
		if !p.capHit {
			p.capHit = true
			p.fail(d.at, d.ref, "", fmt.Sprintf("the manifest makes more than %d jobs; split it", p.maxJobs))
		}
		return false
	}
	size := 0
	for _, v := range input {
		size += countValues(v)
	}
	if p.volume -= size; p.volume < 0 {
		if !p.volumeSpent {
			p.volumeSpent = true
			p.fail(d.at, d.ref, "", "the jobs hold too much data between them (large defaults or aliases, repeated by a matrix or many jobs)")
		}
		return false
	}
	input, ok := p.localRefs(d, input, own)
	if !ok {
		return true
	}
	in, err := json.Marshal(input)
	if err != nil {
		p.fail(d.at, d.ref, "input", "cannot be encoded as JSON: "+err.Error())
		return true
	}
	fp := fingerprint(d.model, in)
	idAt, derived := d.idAt, fromMatrix || id == ""
	switch {
	case id == "":
		id, idAt = ShortID(hex.EncodeToString(fp[:])), d.at
	case fromMatrix:
		idAt = d.at
		if !ValidID(id) {
			p.fail(d.at, d.ref, "id", fmt.Sprintf("matrix id %s is longer than %d characters; shorten the job id", id, maxIDLen))
			return false
		}
	}
	if !p.claim(id, idAt, &fp, derived) {
		return true
	}
	p.m.Jobs = append(p.m.Jobs, Job{
		ID: id, Model: d.model, Input: in, fp: fp, Pos: d.at,
		own: slices.Clip(slices.Clone(own)), places: p.places,
	})
	return true
}

// claim records that id is used at at, or reports that it already was.
func (p *parser) claim(id string, at Pos, fp *[32]byte, derived bool) bool {
	if p.ids == nil {
		return true
	}
	key := id
	prev, taken := p.ids[key]
	if !taken {
		u := idUse{id: id, file: at.File, line: int32(min(at.Line, math.MaxInt32)), col: int32(min(at.Col, math.MaxInt32)), job: -1, derived: derived}
		if fp != nil {
			u.job = int32(len(p.m.Jobs)) // emit appends it next
		}
		p.ids[key] = u
		return true
	}
	var msg string
	switch {
	case derived && fp != nil && prev.job >= 0 && *fp == p.m.Jobs[prev.job].fp:
		msg = fmt.Sprintf("same model and input as the job at %s; give one of them an explicit id", prev.at())
	case derived || prev.derived:
		msg = fmt.Sprintf("derived id %s collides with the job at %s; give one of them an explicit id", id, prev.at())
	default:
		msg = fmt.Sprintf("duplicate id (first used at %s)", prev.at())
	}
	p.fail(at, id, "id", msg)
	return false
}

func badID(id string) string {
	if Reserved(id) {
		return fmt.Sprintf("invalid id %q: reserved, as comfybatch writes %s.jsonl in the output folder; choose another id", id, reservedID)
	}
	return fmt.Sprintf("invalid id %q: use 1 to %d characters from A-Z a-z 0-9 . _ -, starting with a letter or digit", id, maxIDLen)
}

// countValues is how many values v holds, itself included.
func countValues(v any) int {
	n := 1
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			n += countValues(e)
		}
	case map[string]any:
		for _, e := range v {
			n += countValues(e)
		}
	}
	return n
}

// reason strips the path from a file error: the message names the file already.
func reason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
