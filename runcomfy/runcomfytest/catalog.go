package runcomfytest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// CatalogModel is one model of the simulated catalog (GET /v1/models and
// GET /v1/models/{id}).
type CatalogModel struct {
	ID           string
	Kind         string          // what its jobs output: "video", "image" or "audio"
	Categories   []string        // e.g. "image-to-video"
	BasePriceUSD float64         // 0: Config.PriceUSD and PriceUnit, in Answers' shape
	PriceUnit    string          // "second" or "output"
	InputSchema  json.RawMessage // a JSON Schema of the input object
}

// Simulated models the built-in schemas do not know, one per kind of
// output: ids no real model has.
const (
	SimVideoModel = "sim/tide-motion/image-to-video"
	SimImageModel = "sim/pixel-forge/text-to-image"
	SimAudioModel = "sim/echo-voice/text-to-speech"
)

// DefaultCatalog is what the simulated API lists unless Config.Catalog
// says otherwise: three models whose outputs are video, image and audio.
// The models comfybatch has built-in schemas for are answered as before,
// with a price and no schema, so that the built-in schemas decide them.
func DefaultCatalog() []CatalogModel {
	return []CatalogModel{
		{ID: SimVideoModel, Kind: "video", Categories: []string{"image-to-video"}, BasePriceUSD: 0.04, PriceUnit: "second",
			InputSchema: json.RawMessage(`{"type":"object","required":["prompt","img_url"],"properties":{
"prompt":{"type":"string","title":"Prompt"},
"img_url":{"type":"string","title":"Image"},
"duration":{"type":"integer","enum":[4,8],"default":4},
"resolution":{"type":"string","enum":["540p","720p"],"default":"540p"},
"seed":{"type":"integer","minimum":0,"maximum":2147483647}}}`)},
		{ID: SimImageModel, Kind: "image", Categories: []string{"text-to-image"}, BasePriceUSD: 0.03, PriceUnit: "output",
			InputSchema: json.RawMessage(`{"type":"object","required":["prompt"],"properties":{
"prompt":{"type":"string","title":"Prompt"},
"aspect_ratio":{"type":"string","enum":["1:1","16:9","9:16"],"default":"1:1"},
"num_images":{"type":"integer","minimum":1,"maximum":4,"default":1},
"seed":{"type":"integer","minimum":0,"maximum":2147483647}}}`)},
		{ID: SimAudioModel, Kind: "audio", Categories: []string{"text-to-speech"}, BasePriceUSD: 0.01, PriceUnit: "output",
			InputSchema: json.RawMessage(`{"type":"object","required":["text"],"properties":{
"text":{"type":"string","title":"Text"},
"voice":{"type":"string","enum":["alloy","verse","sage"],"default":"alloy"},
"speed":{"type":"number","minimum":0.5,"maximum":2,"default":1}}}`)},
	}
}

// catalogLocked is the catalog served now.
func (s *Server) catalogLocked() []CatalogModel {
	if s.cfg.Catalog != nil {
		return s.cfg.Catalog
	}
	return s.defaultCatalog
}

func (s *Server) catalogModel(id string) (CatalogModel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.catalogLocked() {
		if m.ID == id {
			return m, true
		}
	}
	return CatalogModel{}, false
}

// outputKindLocked is what a new job on model outputs: Answers.OutputKind
// when set, else the catalog model's kind, else video.
func (s *Server) outputKindLocked(model string) string {
	if k := s.cfg.Answers.OutputKind; k != "" {
		return k
	}
	for _, m := range s.catalogLocked() {
		if m.ID == model && m.Kind != "video" {
			return m.Kind
		}
	}
	return ""
}

// catalogBody is a catalog entry as the API answers it.
func catalogBody(m CatalogModel, withSchema bool, cfg Config) map[string]any {
	out := map[string]any{
		"model_id": m.ID, "display_name": m.ID, "kind": m.Kind, "categories": m.Categories,
		"base_price_usd": m.BasePriceUSD, "price_unit": m.PriceUnit,
	}
	if m.BasePriceUSD == 0 {
		out["base_price_usd"], out["price_unit"] = cfg.Answers.priceField(cfg.PriceUSD), cfg.PriceUnit
		if out["base_price_usd"] == nil {
			delete(out, "base_price_usd")
		}
	}
	if withSchema && m.InputSchema != nil {
		out["input_schema"] = m.InputSchema
	}
	return out
}

// models answers GET /v1/models?search=&include_schema=&limit=: the
// catalog's models whose id holds search, case ignored.
func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w, r, &s.n.model, false) {
		return
	}
	q := r.URL.Query()
	search := strings.ToLower(q.Get("search"))
	withSchema := q.Get("include_schema") == "true"
	limit, _ := strconv.Atoi(q.Get("limit"))
	s.mu.Lock()
	all, cfg := s.catalogLocked(), s.cfg
	s.mu.Unlock()
	list := []map[string]any{}
	total := 0
	for _, m := range all {
		if search != "" && !strings.Contains(strings.ToLower(m.ID), search) {
			continue
		}
		total++
		if limit <= 0 || len(list) < limit {
			list = append(list, catalogBody(m, withSchema, cfg))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": list, "total": total})
}
