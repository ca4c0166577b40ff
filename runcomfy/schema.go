package runcomfy

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// builtinFS holds the input schemas comfybatch knows without --schema. Each
// file is RunComfy's model-page envelope ({"model_id", "input", ...}); the
// model id is read from the file, not from its name.
//
//go:embed schemas/*.json
var builtinFS embed.FS

// FieldError is one reason an input is not acceptable.
type FieldError struct {
	Field string // top-level input field ("" for the whole input)
	Path  string // JSON pointer when the problem is deeper than Field, else ""
	Rule  string // short rule name: "required", "type", "enum", "https", "prompt-length", ...
	Msg   string // a sentence that quotes the offending value, shortened
}

func (e FieldError) Error() string {
	where := e.Field
	if e.Path != "" {
		where = e.Path
	}
	if where == "" {
		return e.Msg
	}
	return where + ": " + e.Msg
}

// Schemas is a registry of model input schemas, each compiled once when it
// is added. Validate may be called from many goroutines.
type Schemas struct {
	mu     sync.RWMutex
	models map[string]*modelSchema
}

type modelSchema struct {
	compiled *jsonschema.Schema
	// types maps each top-level property to its JSON type, so that callers
	// can type untyped values (CSV cells) without walking the schema.
	types map[string]string
	// fields describes the top-level properties, for `models show`.
	fields []Field
	// props are the top-level properties, when the schema lists them and
	// leaves additionalProperties unsaid (else nil: nothing to add).
	props map[string]bool
}

// NewSchemas returns an empty registry.
func NewSchemas() *Schemas {
	return &Schemas{models: map[string]*modelSchema{}}
}

// BuiltinSchemas returns a registry holding the schemas embedded in the
// binary.
func BuiltinSchemas() (*Schemas, error) {
	s := NewSchemas()
	files, err := fs.Glob(builtinFS, "schemas/*.json")
	if err != nil {
		return nil, err
	}
	for _, name := range files {
		data, err := builtinFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var head struct {
			ModelID string `json:"model_id"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			return nil, fmt.Errorf("built-in schema %s: %w", name, err)
		}
		if head.ModelID == "" {
			return nil, fmt.Errorf("built-in schema %s: no model_id", name)
		}
		if s.Has(head.ModelID) {
			return nil, fmt.Errorf("built-in schema %s: model %s defined twice", name, head.ModelID)
		}
		if err := s.Add(head.ModelID, data); err != nil {
			return nil, fmt.Errorf("built-in %w", err)
		}
	}
	return s, nil
}

// Add compiles schemaJSON and registers it for model, replacing any schema
// the model had. schemaJSON is either a bare JSON Schema of the input object
// or RunComfy's envelope {"model_id", "input": SCHEMA, "output": ...}, as a
// model's API page publishes it. A schema that does not compile is an error
// and leaves the registry unchanged.
func (s *Schemas) Add(model string, schemaJSON []byte) error {
	if model == "" {
		return errors.New("schema: empty model id")
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return fmt.Errorf("schema for %s: not JSON: %w", model, err)
	}
	doc = unwrapEnvelope(doc)
	obj, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("schema for %s: want a JSON object, got %s", model, jsonTypeOf(doc))
	}

	c := jsonschema.NewCompiler()
	// A schema must be self-contained: resolving $ref over the network or
	// the file system would make validation depend on where it runs.
	c.UseLoader(noLoader{})
	const url = "comfybatch:///input-schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return fmt.Errorf("schema for %s: %w", model, err)
	}
	compiled, err := c.Compile(url)
	if err != nil {
		return fmt.Errorf("schema for %s does not compile: %w", model, err)
	}

	ms := &modelSchema{compiled: compiled, types: propertyTypes(obj), fields: fieldsOf(obj)}
	if p, ok := obj["properties"].(map[string]any); ok && obj["additionalProperties"] == nil {
		ms.props = make(map[string]bool, len(p))
		for name := range p {
			ms.props[name] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.models == nil {
		s.models = map[string]*modelSchema{}
	}
	s.models[model] = ms
	return nil
}

// unwrapEnvelope returns the "input" schema of a RunComfy envelope, and doc
// itself when it is already a bare schema.
func unwrapEnvelope(doc any) any {
	obj, ok := doc.(map[string]any)
	if !ok {
		return doc
	}
	_, hasType := obj["type"]
	_, hasProps := obj["properties"]
	if in, ok := obj["input"].(map[string]any); ok && !hasType && !hasProps {
		return in
	}
	return doc
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external $ref %s is not supported: inline it", url)
}

// Models returns the model ids with a schema, sorted.
func (s *Schemas) Models() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]string, 0, len(s.models))
	for id := range s.models {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Has reports whether model has a schema.
func (s *Schemas) Has(model string) bool {
	return s.lookup(model) != nil
}

func (s *Schemas) lookup(model string) *modelSchema {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.models[model]
}

// Unlisted reports whether field is missing from the properties of model's
// schema while the schema does not say whether other fields are allowed:
// such a field is most likely a typo that RunComfy would ignore or refuse.
// A schema with additionalProperties decides for itself, in Validate.
func (s *Schemas) Unlisted(model, field string) bool {
	ms := s.lookup(model)
	return ms != nil && ms.props != nil && !ms.props[field]
}

// FieldType returns the JSON type of a top-level input property of model:
// "integer", "number", "boolean", "string", "array", "object", or "" when
// the model or the property is unknown or its type is not a single one.
func (s *Schemas) FieldType(model, field string) string {
	ms := s.lookup(model)
	if ms == nil {
		return ""
	}
	return ms.types[field]
}

// propertyTypes reads the type of each top-level property. Where "type" is
// missing it is inferred from an enum whose values share one type;
// "null" alongside one other type (["integer","null"]) counts as that type.
func propertyTypes(schema map[string]any) map[string]string {
	props, _ := schema["properties"].(map[string]any)
	types := make(map[string]string, len(props))
	for name, p := range props {
		prop, _ := p.(map[string]any)
		if t := declaredType(prop); t != "" {
			types[name] = t
		}
	}
	return types
}

func declaredType(prop map[string]any) string {
	var candidates []string
	switch t := prop["type"].(type) {
	case string:
		candidates = []string{t}
	case []any:
		for _, v := range t {
			if s, ok := v.(string); ok && s != "null" {
				candidates = append(candidates, s)
			}
		}
	case nil:
		enum, _ := prop["enum"].([]any)
		seen := map[string]bool{}
		for _, v := range enum {
			if t := jsonTypeOf(v); t != "null" && !seen[t] {
				seen[t] = true
				candidates = append(candidates, t)
			}
		}
	}
	if len(candidates) != 1 {
		return ""
	}
	return candidates[0]
}

// jsonTypeOf names the JSON type of a decoded value, telling integers from
// other numbers by value (5.0 is an integer, as in JSON Schema).
func jsonTypeOf(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return "integer"
	case float64:
		if v == math.Trunc(v) && !math.IsInf(v, 0) {
			return "integer"
		}
		return "number"
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// Validate checks input against model's schema and RunComfy's own rules
// (see runcomfyRules) and returns every problem found, sorted by field. A
// model without a schema gets RunComfy's rules only. The input must hold
// JSON values as encoding/json or YAML decoding produce them (int64 and
// float64 numbers are both understood).
func (s *Schemas) Validate(model string, input map[string]any) []FieldError {
	if input == nil {
		input = map[string]any{}
	}
	var errs []FieldError
	if ms := s.lookup(model); ms != nil {
		errs = schemaErrors(ms.compiled, input)
	}
	// The schema speaks first: a field it already rejected is not judged
	// again by RunComfy's rules, so one mistake gives one error (seed -1
	// is "minimum" under the seed schema, "seed-range" without a schema).
	flagged := make(map[string]bool, len(errs))
	for _, e := range errs {
		flagged[e.Field] = true
	}
	for _, e := range runcomfyRules(input) {
		if !flagged[e.Field] {
			errs = append(errs, e)
		}
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Rule < b.Rule
	})
	return errs
}

// schemaErrors runs the compiled schema and turns each leaf of the library's
// error tree into a FieldError.
func schemaErrors(sch *jsonschema.Schema, input map[string]any) []FieldError {
	err := sch.Validate(input)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return []FieldError{{Rule: "schema", Msg: clip(err.Error(), 200)}}
	}
	var out []FieldError
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		out = append(out, leafErrors(e, input)...)
	}
	walk(verr)
	return dropBesideTypeErrors(out)
}

// dropBesideTypeErrors keeps only the type error where a value has one: 5.5
// for an integer enum is one mistake, not a type and an enum error.
func dropBesideTypeErrors(errs []FieldError) []FieldError {
	typed := map[[2]string]bool{}
	for _, e := range errs {
		if e.Rule == "type" {
			typed[[2]string{e.Field, e.Path}] = true
		}
	}
	kept := errs[:0]
	for _, e := range errs {
		if e.Rule == "type" || !typed[[2]string{e.Field, e.Path}] {
			kept = append(kept, e)
		}
	}
	return kept
}

func leafErrors(e *jsonschema.ValidationError, input map[string]any) []FieldError {
	loc := e.InstanceLocation
	rule := "schema"
	if kp := e.ErrorKind.KeywordPath(); len(kp) > 0 {
		rule = kp[len(kp)-1]
	}
	// Errors about an object's properties are reported on each property,
	// so that a missing prompt points at prompt.
	var props []string
	var format string
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		props, format = k.Missing, "%s is required"
	case *kind.AdditionalProperties:
		props, format = k.Properties, "%s is not a field this model accepts"
	}
	if props != nil {
		out := make([]FieldError, 0, len(props))
		for _, p := range props {
			out = append(out, fieldAt(append(slices.Clone(loc), p), rule, fmt.Sprintf(format, p)))
		}
		return out
	}
	return []FieldError{fieldAt(loc, rule, kindMessage(e.ErrorKind, valueAt(input, loc)))}
}

// fieldAt makes a FieldError for the value at the JSON pointer tokens loc.
func fieldAt(loc []string, rule, msg string) FieldError {
	fe := FieldError{Rule: rule, Msg: msg}
	if len(loc) > 0 {
		fe.Field = loc[0]
	}
	if len(loc) > 1 {
		fe.Path = pointer(loc)
	}
	return fe
}

// kindMessage words the common schema errors around the offending value;
// rarer ones keep the library's wording.
func kindMessage(k jsonschema.ErrorKind, value any) string {
	v := show(value)
	switch k := k.(type) {
	case *kind.Type:
		return fmt.Sprintf("%s is %s, want %s", v, article(jsonTypeOf(value)), strings.Join(k.Want, " or "))
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = show(w)
		}
		return fmt.Sprintf("%s is not one of %s", v, strings.Join(want, ", "))
	case *kind.Minimum:
		return fmt.Sprintf("%s is below the minimum %s", v, k.Want.RatString())
	case *kind.Maximum:
		return fmt.Sprintf("%s is above the maximum %s", v, k.Want.RatString())
	case *kind.ExclusiveMinimum:
		return fmt.Sprintf("%s must be greater than %s", v, k.Want.RatString())
	case *kind.ExclusiveMaximum:
		return fmt.Sprintf("%s must be less than %s", v, k.Want.RatString())
	case *kind.MaxLength:
		return fmt.Sprintf("%s is %d characters, at most %d allowed", v, k.Got, k.Want)
	case *kind.MinLength:
		return fmt.Sprintf("%s is %d characters, at least %d needed", v, k.Got, k.Want)
	case *kind.Pattern:
		return fmt.Sprintf("%s does not match %s", v, k.Want)
	}
	return fmt.Sprintf("%s: %s", v, clip(k.LocalizedString(message.NewPrinter(language.English)), 120))
}

func article(t string) string {
	switch t {
	case "integer", "array", "object":
		return "an " + t
	}
	return "a " + t
}

// valueAt follows a JSON pointer's tokens into a decoded value.
func valueAt(v any, loc []string) any {
	for _, tok := range loc {
		switch c := v.(type) {
		case map[string]any:
			v = c[tok]
		case []any:
			var i int
			if _, err := fmt.Sscan(tok, &i); err != nil || i < 0 || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

func pointer(loc []string) string {
	var b strings.Builder
	r := strings.NewReplacer("~", "~0", "/", "~1")
	for _, tok := range loc {
		b.WriteByte('/')
		b.WriteString(r.Replace(tok))
	}
	return b.String()
}

// show renders a value for a message: JSON, cut to about 60 characters.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return clip(fmt.Sprint(v), 60)
	}
	return clip(string(b), 60)
}

// clip shortens s to at most n runes, marking the cut.
func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
