package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

const catalogManifest = `version: 1
model: sim/tide-motion/image-to-video
defaults:
  resolution: 540p
jobs:
  - id: clip
    input:
      prompt: "a kite over the dunes"
      img_url: https://example.com/kite.png
      duration: 6
`

// TestCatalog: a model the built-in schemas do not know is validated from
// the (simulated) catalog, a wrong enum an error at its line before any
// POST; the schema is kept in the ledger, so validate and plan say the same
// with no token and no network; a later change of the catalog is reported.
func TestCatalog(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "sim.yaml")
	if err := os.WriteFile(manifest, []byte(catalogManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, env := serveFake(t, runcomfytest.Config{})
	const wrong = "sim.yaml:10:17: job clip: input.duration: enum: 6 is not one of 4, 8"

	r := runBinary(t, env, "run", manifest, "-q")
	if r.code != 2 || !strings.Contains(r.stderr, wrong) {
		t.Fatalf("run exited %d, want 2 with %q:\n%s", r.code, wrong, r.stderr)
	}
	if st := srv.Stats(); st.Submits != 0 || st.Model == 0 {
		t.Fatalf("the API saw %d submits and %d model calls; want none and the catalog asked", st.Submits, st.Model)
	}

	// Offline: no token, an API that cannot be reached.
	offline := []string{"RUNCOMFY_TOKEN=", "RUNCOMFY_API_TOKEN=", "YOUR_API_TOKEN=", "RUNCOMFY_API_BASE=http://127.0.0.1:1"}
	asked := srv.Stats().Model
	v := runBinary(t, offline, "validate", manifest)
	if v.code != 2 || !strings.Contains(v.stderr, wrong) || strings.Contains(v.stderr, "no input schema") {
		t.Errorf("offline validate exited %d, want 2 with %q from the ledger:\n%s", v.code, wrong, v.stderr)
	}
	p := runBinary(t, offline, "plan", manifest)
	if p.code != 2 || !strings.Contains(p.stderr, wrong) {
		t.Errorf("offline plan exited %d, want 2 with %q:\n%s", p.code, wrong, p.stderr)
	}
	if srv.Stats().Model != asked {
		t.Error("offline validate or plan asked the API")
	}

	// The catalog changes: the next run says so and judges by the new one.
	srv.Update(func(c *runcomfytest.Config) {
		cat := runcomfytest.DefaultCatalog()
		for i := range cat {
			if cat[i].ID == runcomfytest.SimVideoModel {
				cat[i].InputSchema = json.RawMessage(strings.Replace(string(cat[i].InputSchema), `"enum":[4,8]`, `"enum":[4,6,8]`, 1))
				cat[i].BasePriceUSD = 0.06
			}
		}
		c.Catalog = cat
	})
	r = runBinary(t, env, "run", manifest, "--rps", "1000")
	if r.code != 0 {
		t.Fatalf("run after the catalog allowed 6 exited %d:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "RunComfy's catalog entry for sim/tide-motion/image-to-video changed since it was read at ") ||
		!strings.Contains(r.stderr, "its input schema and its price (was 0.04 per second, now 0.06 per second)") {
		t.Errorf("the change was not reported:\n%s", r.stderr)
	}
	if v := runBinary(t, offline, "validate", manifest); v.code != 0 {
		t.Errorf("offline validate after the change exited %d (the ledger should keep the new schema):\n%s", v.code, v.stderr)
	}
}

// TestModelsCatalog: `models` searches the catalog when the API can be
// asked, telling where each model's schema comes from; `models show` of a
// model only the catalog knows lists its fields and price.
func TestModelsCatalog(t *testing.T) {
	t.Parallel()
	r := runMain(t, nil, "models", "--fake", "--search", "SIM/", "--json")
	var list []catalogModelJSON
	if err := json.Unmarshal([]byte(r.stdout), &list); r.code != 0 || err != nil {
		t.Fatalf("models --search: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	kinds := map[string]string{}
	for _, m := range list {
		if m.Schema != "catalog" || m.Price == nil {
			t.Errorf("%s: schema %q, price %v; want the catalog's", m.Model, m.Schema, m.Price)
		}
		kinds[m.Model] = m.Kind
	}
	want := map[string]string{runcomfytest.SimVideoModel: "video", runcomfytest.SimImageModel: "image", runcomfytest.SimAudioModel: "audio"}
	if len(kinds) != len(want) {
		t.Errorf("models found: %v, want %v", kinds, want)
	}
	for id, k := range want {
		if kinds[id] != k {
			t.Errorf("%s outputs %q, want %q", id, kinds[id], k)
		}
	}
	if r := runMain(t, nil, "models", "--fake", "--search", "no-such-thing"); r.code != 0 || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("a search that finds nothing: exit %d\n%s", r.code, r.stdout)
	}
	if r := runMain(t, nil, "models", "--search", "wan"); r.code != 2 || !strings.Contains(r.stderr, "needs a token") {
		t.Errorf("--search without a token: exit %d\n%s", r.code, r.stderr)
	}

	r = runMain(t, nil, "models", "show", runcomfytest.SimAudioModel, "--fake", "--json")
	var got modelJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil {
		t.Fatalf("models show: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if got.Schema != "catalog" || len(got.Fields) != 3 || got.Fields[0].Name != "text" || !got.Fields[0].Required ||
		got.Price == nil || got.Price.BaseUSD != 0.01 || got.Price.Unit != "output" {
		t.Errorf("models show of a catalog model:\n%s", r.stdout)
	}
	if r := runMain(t, nil, "models", "show", runcomfytest.SimAudioModel); r.code != 2 {
		t.Errorf("models show of a catalog model without a token: exit %d, want 2", r.code)
	}
}
