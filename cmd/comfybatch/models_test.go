package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"comfybatch/runcomfy"
)

// TestModelsShow: a model's fields with their types, requirement, defaults
// and allowed values, and its price when the API can be asked (--fake
// here); a typo of a known id names it; an unknown one is exit 2.
func TestModelsShow(t *testing.T) {
	t.Parallel()
	const model = "wan-ai/wan-2-6/flash/image-to-video"
	for _, c := range []struct {
		name string
		args []string
		code int
	}{
		{"no_token", []string{"models", "show", model}, 0},
		{"fake", []string{"models", "show", model, "--fake"}, 0},
		{"typo", []string{"models", "show", "wan-ai/wan-2-6/flash/image-to-vide"}, 2},
		{"unknown", []string{"models", "show", "acme/brand-new-model"}, 2},
		{"subcommand_typo", []string{"models", "shw", model}, 2},
	} {
		r := runMain(t, nil, c.args...)
		if r.code != c.code {
			t.Errorf("%v: exit %d, want %d\n%s", c.args, r.code, c.code, r.stderr)
		}
		checkGolden(t, filepath.Join("../../testdata/models", c.name+".golden"), r.stdout+r.stderr)
	}
	// --json: every field whole, and the price.
	r := runMain(t, nil, "models", "show", model, "--fake", "--json")
	var got modelJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil {
		t.Fatalf("models show --json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	byName := map[string]runcomfy.Field{}
	for _, f := range got.Fields {
		byName[f.Name] = f
	}
	d := byName["duration"]
	if got.Model != model || got.Price == nil || got.Price.BaseUSD != 0.05 || got.Price.Unit != "second" ||
		!byName["prompt"].Required || !byName["img_url"].Required || byName["seed"].Required ||
		d.Type != "integer" || string(d.Default) != "5" || len(d.Enum) != 3 || string(d.Enum[2]) != "15" ||
		byName["seed"].Maximum == nil || *byName["seed"].Maximum != 2147483647 {
		t.Errorf("models show --json:\n%s", r.stdout)
	}

	// A schema given with --schema is shown too.
	r = runMain(t, nil, "models", "show", "acme/custom", "--schema", "acme/custom=../../testdata/schema-errors/custom-schema.json")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "acme/custom\n") {
		t.Errorf("models show of a --schema model: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
