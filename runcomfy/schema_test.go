package runcomfy_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"comfybatch/runcomfy"
)

const seedModel = "wan-ai/wan-2-6/flash/image-to-video"

func builtinSchemas(t *testing.T) *runcomfy.Schemas {
	t.Helper()
	s, err := runcomfy.BuiltinSchemas()
	if err != nil {
		t.Fatalf("BuiltinSchemas: %v", err)
	}
	return s
}

// goodSeedInput is a complete, valid input for the seed model, with values
// typed as the manifest decoder produces them (int64, not int).
func goodSeedInput() map[string]any {
	return map[string]any{
		"prompt":          "Two children in a bathtub",
		"negative_prompt": "blurry",
		"img_url":         "https://example.com/tub.png",
		"audio_url":       "https://example.com/tub.mp3",
		"duration":        int64(10),
		"resolution":      "1080P",
		"shot_type":       "single",
		"seed":            int64(2147483647),
		"prompt_extend":   false,
		"audio":           true,
	}
}

// rulesOf lists "field rule" pairs, the part of a FieldError tests pin.
func rulesOf(errs []runcomfy.FieldError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field+" "+e.Rule)
	}
	return out
}

func TestValidateSeedModel(t *testing.T) {
	s := builtinSchemas(t)
	tests := []struct {
		name   string
		change func(in map[string]any)
		want   []string // "field rule", in the order Validate returns them
	}{
		{"good input", func(map[string]any) {}, nil},
		{"only the required fields", func(in map[string]any) {
			for k := range in {
				if k != "prompt" && k != "img_url" {
					delete(in, k)
				}
			}
		}, nil},
		{"missing prompt", func(in map[string]any) { delete(in, "prompt") }, []string{"prompt required"}},
		{"missing prompt and img_url", func(in map[string]any) { delete(in, "prompt"); delete(in, "img_url") },
			[]string{"img_url required", "prompt required"}},
		{"resolution not in enum", func(in map[string]any) { in["resolution"] = "4K" }, []string{"resolution enum"}},
		{"resolution is case-sensitive", func(in map[string]any) { in["resolution"] = "720p" }, []string{"resolution enum"}},
		{"duration not in enum", func(in map[string]any) { in["duration"] = int64(7) }, []string{"duration enum"}},
		{"duration as a string", func(in map[string]any) { in["duration"] = "5" }, []string{"duration type"}},
		{"duration float64 5.5 is not an integer (one error, not type+enum)", func(in map[string]any) { in["duration"] = 5.5 }, []string{"duration type"}},
		{"duration float64 5 is the integer 5", func(in map[string]any) { in["duration"] = float64(5) }, nil},
		{"seed -1", func(in map[string]any) { in["seed"] = int64(-1) }, []string{"seed minimum"}},
		{"seed 2147483648", func(in map[string]any) { in["seed"] = int64(2147483648) }, []string{"seed maximum"}},
		{"seed 0", func(in map[string]any) { in["seed"] = int64(0) }, nil},
		{"seed float64 7.5", func(in map[string]any) { in["seed"] = 7.5 }, []string{"seed type"}},
		{"prompt of 1500 runes", func(in map[string]any) { in["prompt"] = strings.Repeat("é", 1500) }, []string{"prompt prompt-length"}},
		{"prompt of 1499 runes (2998 bytes) passes", func(in map[string]any) { in["prompt"] = strings.Repeat("é", 1499) }, nil},
		{"negative_prompt of 1500 runes", func(in map[string]any) { in["negative_prompt"] = strings.Repeat("x", 1500) }, []string{"negative_prompt prompt-length"}},
		{"http URL to a public host", func(in map[string]any) { in["img_url"] = "http://example.com/tub.png" }, []string{"img_url https"}},
		{"http to 127.0.0.1 allowed", func(in map[string]any) { in["img_url"] = "http://127.0.0.1:8080/tub.png" }, nil},
		{"http to 127.1.2.3 allowed", func(in map[string]any) { in["img_url"] = "http://127.1.2.3/tub.png" }, nil},
		{"http to [::1] allowed", func(in map[string]any) { in["audio_url"] = "http://[::1]:9/a.wav" }, nil},
		{"http to localhost allowed", func(in map[string]any) { in["img_url"] = "http://localhost/tub.png" }, nil},
		{"data URI rejected", func(in map[string]any) { in["img_url"] = "data:image/png;base64,iVBORw0KGgo=" }, []string{"img_url https"}},
		{"ftp rejected", func(in map[string]any) { in["audio_url"] = "ftp://example.com/a.mp3" }, []string{"audio_url https"}},
		{"relative path is not a URL", func(in map[string]any) { in["img_url"] = "tub.png" }, []string{"img_url url"}},
		{"img_url of the wrong type is a type error only", func(in map[string]any) { in["img_url"] = int64(3) }, []string{"img_url type"}},
		{"boolean as string", func(in map[string]any) { in["audio"] = "true" }, []string{"audio type"}},
		{"every error reported, sorted by field", func(in map[string]any) {
			in["seed"] = int64(-5)
			in["resolution"] = "4K"
			in["img_url"] = "http://example.com/a.png"
			delete(in, "prompt")
		}, []string{"img_url https", "prompt required", "resolution enum", "seed minimum"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := goodSeedInput()
			tt.change(in)
			errs := s.Validate(seedModel, in)
			if got := rulesOf(errs); !slices.Equal(got, tt.want) {
				t.Errorf("rules = %q, want %q\nerrors: %v", got, tt.want, errs)
			}
			for _, e := range errs {
				if e.Msg == "" || len([]rune(e.Msg)) > 200 {
					t.Errorf("%s: message %q should be a short sentence", e.Field, e.Msg)
				}
			}
		})
	}
}

func TestValidateMessagesQuoteTheValue(t *testing.T) {
	s := builtinSchemas(t)
	in := goodSeedInput()
	in["resolution"] = "4K"
	in["prompt"] = strings.Repeat("long prompt ", 200)
	errs := s.Validate(seedModel, in)
	if len(errs) != 2 {
		t.Fatalf("got %v, want a prompt and a resolution error", errs)
	}
	if p := errs[0]; !strings.Contains(p.Msg, `"long prompt long`) || !strings.Contains(p.Msg, "…") || !strings.Contains(p.Msg, "2400 characters") {
		t.Errorf("prompt message %q should quote a shortened prompt and its length", p.Msg)
	}
	if r := errs[1]; !strings.Contains(r.Msg, `"4K"`) || !strings.Contains(r.Msg, `"720P"`) {
		t.Errorf("enum message %q should quote the value and the choices", r.Msg)
	}
	if got := errs[1].Error(); got != `resolution: "4K" is not one of "720P", "1080P"` {
		t.Errorf("Error() = %q", got)
	}
}

func TestValidateUnknownModel(t *testing.T) {
	s := builtinSchemas(t)
	const model = "someone/some-model"
	if errs := s.Validate(model, map[string]any{"anything": []any{int64(1)}, "prompt": "p"}); errs != nil {
		t.Errorf("an unknown model's plain input should pass, got %v", errs)
	}
	if errs := s.Validate(model, nil); errs != nil {
		t.Errorf("nil input is an empty object, got %v", errs)
	}
	// RunComfy's own rules still apply without a schema.
	errs := s.Validate(model, map[string]any{
		"seed":       int64(-1),
		"prompt":     strings.Repeat("a", 1500),
		"image_urls": []any{"https://example.com/a.png", "http://example.com/b.png"},
		"ref_image":  "http://example.com/c.png", // a medium field with a URL value
		"audio":      true,                       // a medium field without a URL: not judged
		"caption":    "http://example.com/ is fine in text",
	})
	want := []string{"image_urls https", "prompt prompt-length", "ref_image https", "seed seed-range"}
	if got := rulesOf(errs); !slices.Equal(got, want) {
		t.Fatalf("rules = %q, want %q (%v)", got, want, errs)
	}
	if errs[0].Path != "/image_urls/1" {
		t.Errorf("array element path = %q, want /image_urls/1", errs[0].Path)
	}
	if errs := s.Validate(model, map[string]any{"seed": int64(2147483648)}); len(errs) != 1 || errs[0].Rule != "seed-range" {
		t.Errorf("seed 2^31 = %v, want one seed-range error", errs)
	}
}

func TestBuiltinModels(t *testing.T) {
	s := builtinSchemas(t)
	want := []string{
		"wan-ai/wan-2-5/image-to-video",
		"wan-ai/wan-2-6/flash/image-to-video",
		"wan-ai/wan-2-6/image-to-video",
	}
	if got := s.Models(); !slices.Equal(got, want) {
		t.Errorf("Models() = %q, want %q", got, want)
	}
	for _, m := range want {
		if !s.Has(m) {
			t.Errorf("Has(%q) = false", m)
		}
		if errs := s.Validate(m, map[string]any{"img_url": "https://example.com/a.jpg"}); !slices.Equal(rulesOf(errs), []string{"prompt required"}) {
			t.Errorf("%s without prompt: %v", m, errs)
		}
	}
	if s.Has("wan-ai/wan-2-6/text-to-video") {
		t.Error("text-to-video has no documented schema and must not be built in")
	}
}

func TestFieldType(t *testing.T) {
	s := builtinSchemas(t)
	tests := []struct{ model, field, want string }{
		{seedModel, "duration", "integer"},
		{seedModel, "seed", "integer"},
		{seedModel, "prompt", "string"},
		{seedModel, "resolution", "string"},
		{seedModel, "audio", "boolean"},
		{seedModel, "prompt_extend", "boolean"},
		{seedModel, "no_such_field", ""},
		{"unknown/model", "duration", ""},
	}
	for _, tt := range tests {
		if got := s.FieldType(tt.model, tt.field); got != tt.want {
			t.Errorf("FieldType(%q, %q) = %q, want %q", tt.model, tt.field, got, tt.want)
		}
	}

	// Types come from "type", from a nullable type list, or from an enum.
	err := s.Add("x/typed", []byte(`{"type":"object","properties":{
		"n":{"type":["number","null"]},
		"e":{"enum":[1,2,3]},
		"mixed":{"enum":[1,"a"]},
		"list":{"type":"array","items":{"type":"string"}},
		"any":{}
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"n": "number", "e": "integer", "mixed": "", "list": "array", "any": ""} {
		if got := s.FieldType("x/typed", field); got != want {
			t.Errorf("FieldType(x/typed, %q) = %q, want %q", field, got, want)
		}
	}
}

func TestAddOverride(t *testing.T) {
	s := builtinSchemas(t)
	// An override replaces the built-in schema: here 480P becomes the only
	// resolution and unknown fields are refused. The envelope form, as on
	// RunComfy's model pages, is accepted too.
	override := `{"model_id":"ignored","input":{"type":"object","required":["prompt"],
		"additionalProperties":false,
		"properties":{"prompt":{"type":"string"},"resolution":{"enum":["480P"]}}}}`
	if err := s.Add(seedModel, []byte(override)); err != nil {
		t.Fatalf("Add: %v", err)
	}
	errs := s.Validate(seedModel, map[string]any{"prompt": "p", "resolution": "720P", "img_url": "https://example.com/a.png"})
	if got, want := rulesOf(errs), []string{"img_url additionalProperties", "resolution enum"}; !slices.Equal(got, want) {
		t.Errorf("after override: %q, want %q (%v)", got, want, errs)
	}
	if got := s.FieldType(seedModel, "duration"); got != "" {
		t.Errorf("override should replace FieldType too, duration = %q", got)
	}

	// A bare schema for a new model makes it known.
	if err := s.Add("me/new-model", []byte(`{"type":"object","properties":{"steps":{"type":"integer","maximum":50}}}`)); err != nil {
		t.Fatal(err)
	}
	if !s.Has("me/new-model") || !slices.Contains(s.Models(), "me/new-model") {
		t.Error("added model is not listed")
	}
	if got := rulesOf(s.Validate("me/new-model", map[string]any{"steps": int64(51)})); !slices.Equal(got, []string{"steps maximum"}) {
		t.Errorf("new model: %q", got)
	}
}

func TestAddRejectsBadSchemas(t *testing.T) {
	s := builtinSchemas(t)
	tests := []struct{ name, schema, wantInErr string }{
		{"not JSON", `{"type":`, "not JSON"},
		{"not an object", `[1,2]`, "want a JSON object"},
		{"invalid keyword value", `{"type":"object","properties":{"a":{"type":5}}}`, "does not compile"},
		{"bad regexp", `{"type":"object","properties":{"a":{"type":"string","pattern":"("}}}`, "does not compile"},
		{"external ref", `{"$ref":"https://example.com/s.json"}`, "does not compile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Add(seedModel, []byte(tt.schema))
			if err == nil || !strings.Contains(err.Error(), tt.wantInErr) || !strings.Contains(err.Error(), seedModel) {
				t.Fatalf("Add error = %v, want one naming the model and saying %q", err, tt.wantInErr)
			}
		})
	}
	// A failed Add leaves the built-in schema in place.
	if got := s.FieldType(seedModel, "duration"); got != "integer" {
		t.Errorf("built-in schema was replaced by a failed Add (duration type %q)", got)
	}
}

func TestValidateConcurrently(t *testing.T) {
	s := builtinSchemas(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := goodSeedInput()
			in["seed"] = int64(i - 8) // half of them invalid
			errs := s.Validate(seedModel, in)
			if (i < 8) != (len(errs) == 1) {
				t.Errorf("seed %d: %v", i-8, errs)
			}
			if i == 0 {
				_ = s.Add(fmt.Sprintf("m/%d", i), []byte(`{"type":"object"}`))
			}
		}()
	}
	wg.Wait()
}

func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://example.com/a.png":    true,
		"HTTPS://example.com/a.png":    true,
		"http://127.0.0.1:8189/a.png":  true,
		"http://localhost:1/a.png":     true,
		"http://[::1]/a.png":           true,
		"http://example.com/a.png":     false,
		"http://127.example.com/a.png": false,
		"http://10.0.0.1/a.png":        false,
		"file:///etc/passwd":           false,
		"data:image/png;base64,AAAA":   false,
		"/tmp/a.png":                   false,
		"":                             false,
	} {
		if err := runcomfy.CheckURL(raw); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
}
