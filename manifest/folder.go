package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// folder reads an include entry {files: GLOB, as: FIELD, model?, input?,
// matrix?}: one job per file the glob matches (relative to the manifest),
// in name order, the file in FIELD as a local file, merged over the
// defaults like any job. Each job's id is the file's name without its
// extension, so it stays the same however the folder grows.
func (p *parser) folder(item *yaml.Node, index int) {
	n := resolve(item)
	ref := "include #" + strconv.Itoa(index)
	before := len(p.errs)
	var filesNode, asNode, modelNode, inputNode, matrixNode *yaml.Node
	for _, e := range p.pairs(n, "include", ref) {
		switch e.key {
		case "files":
			filesNode = e.val
		case "as":
			asNode = e.val
		case "model":
			modelNode = e.val
		case "input":
			inputNode = e.val
		case "matrix":
			matrixNode = e.val
		default:
			p.fail(p.at(e.keyNode), ref, e.key, "unknown key; expected files, as, model, input or matrix")
		}
	}
	var pattern, as string
	switch {
	case filesNode == nil:
		p.fail(p.at(item), ref, "files", "missing: a folder include needs files: GLOB (e.g. frames/*.png) and as: FIELD")
	default:
		pattern, _ = p.text(filesNode, ref, "files")
	}
	switch {
	case asNode == nil:
		p.fail(p.at(item), ref, "as", "missing: name the input field each file goes in (e.g. as: img_url)")
	default:
		as, _ = p.text(asNode, ref, "as")
	}
	d := draft{ref: ref, at: p.at(item), model: p.m.Model}
	if modelNode != nil {
		d.model, _ = p.text(modelNode, ref, "model")
	} else if d.model == "" && !p.modelBad {
		p.fail(d.at, ref, "model", "no model: set model on the entry or at the top of the manifest")
	}
	if inputNode != nil {
		if in := resolve(inputNode); in.Kind == yaml.MappingNode {
			d.input, d.fieldPos = p.fields(in, "input", ref)
		} else {
			p.fail(p.at(inputNode), ref, "input", fmt.Sprintf("must be a mapping of input fields, not %s", describe(in)))
		}
	}
	if _, clash := d.input[as]; clash && as != "" {
		p.fail(d.fieldPos[as], ref, "input."+as, fmt.Sprintf("is the field the files go in (as: %s); remove it from input", as))
	}
	var axes []axis
	if matrixNode != nil {
		axes = p.matrix(matrixNode, ref, true)
	}
	if len(p.errs) > before || pattern == "" || as == "" {
		return
	}
	at := p.at(filesNode)
	if filepath.IsAbs(pattern) || strings.HasPrefix(pattern, "/") || strings.HasPrefix(pattern, `\`) {
		p.fail(at, ref, "files", fmt.Sprintf("%s: use a pattern relative to the manifest", pattern))
		return
	}
	glob := filepath.Join(p.m.Dir, filepath.FromSlash(pattern))
	matches, err := filepath.Glob(glob)
	if err != nil {
		p.fail(at, ref, "files", fmt.Sprintf("%s: %v", pattern, err))
		return
	}
	p.m.Globs = append(p.m.Globs, glob)
	var files []string
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() {
			files = append(files, m)
		}
	}
	if len(files) == 0 {
		p.fail(at, ref, "files", fmt.Sprintf("%s matches no file in %s", pattern, p.m.Dir))
		return
	}
	slices.Sort(files)
	for _, path := range files {
		rel, err := filepath.Rel(p.m.Dir, path)
		if err != nil {
			rel = path
		}
		p.entries++
		fd := d
		fd.id = fileID(filepath.Base(path))
		fd.ref, fd.idAt = fd.id, at
		if !ValidID(fd.id) {
			p.fail(at, ref, "files", fmt.Sprintf("%s: %s", rel, badID(fd.id)))
			continue
		}
		r, why := p.localRef(rel)
		if why != "" {
			p.fail(at, fd.id, "files", why)
			continue
		}
		fd.input = make(map[string]any, len(d.input)+1)
		fd.fieldPos = make(map[string]Pos, len(d.fieldPos)+1)
		for k, v := range d.input {
			fd.input[k], fd.fieldPos[k] = v, d.fieldPos[k]
		}
		fd.input[as], fd.fieldPos[as] = r.String(), at
		p.add(fd, axes)
	}
}

var notInID = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// fileID makes a job id of a file name: its name without the extension,
// each run of characters an id cannot hold made a '-'.
func fileID(name string) string {
	stem := strings.TrimSuffix(name, filepath.Ext(name))
	return strings.TrimLeft(notInID.ReplaceAllString(stem, "-"), "._-")
}
