package runcomfy

import (
	"cmp"
	"encoding/json"
	"slices"
)

// Field is one top-level input field of a model, as its schema describes it.
type Field struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"`              // "" when the schema gives none
	Required    bool              `json:"required"`          // the schema requires it
	Default     json.RawMessage   `json:"default,omitempty"` // the model's default; comfybatch never sends it
	Enum        []json.RawMessage `json:"enum,omitempty"`    // the values allowed, when the schema lists them
	Minimum     *float64          `json:"minimum,omitempty"`
	Maximum     *float64          `json:"maximum,omitempty"`
	Title       string            `json:"title,omitempty"`
	Description string            `json:"description,omitempty"`
}

// Fields lists the top-level input fields of model's schema, the required
// ones first, each group by name; false when model has no schema.
func (s *Schemas) Fields(model string) ([]Field, bool) {
	ms := s.lookup(model)
	if ms == nil {
		return nil, false
	}
	return slices.Clone(ms.fields), true
}

// fieldsOf reads the top-level properties of an input schema.
func fieldsOf(schema map[string]any) []Field {
	props, _ := schema["properties"].(map[string]any)
	required := map[string]bool{}
	if req, ok := schema["required"].([]any); ok {
		for _, r := range req {
			if name, ok := r.(string); ok {
				required[name] = true
			}
		}
	}
	out := make([]Field, 0, len(props))
	for name, p := range props {
		prop, _ := p.(map[string]any)
		f := Field{Name: name, Type: declaredType(prop), Required: required[name]}
		f.Title, _ = prop["title"].(string)
		f.Description, _ = prop["description"].(string)
		if d, ok := prop["default"]; ok {
			f.Default = raw(d)
		}
		if enum, ok := prop["enum"].([]any); ok {
			for _, v := range enum {
				f.Enum = append(f.Enum, raw(v))
			}
		}
		f.Minimum, f.Maximum = number(prop["minimum"]), number(prop["maximum"])
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Field) int {
		if a.Required != b.Required {
			if a.Required {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

// raw spells a schema value as JSON; the schema was JSON, so it always is.
func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

func number(v any) *float64 {
	var f float64
	if b := raw(v); v != nil && json.Unmarshal(b, &f) == nil {
		return &f
	}
	return nil
}
