package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"comfybatch/manifest"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

// The catalog: RunComfy's GET /v1/models/{id} gives a model's input schema
// and price. A run asks it for every model of its manifest (one call a
// model; the answer that gives the price gives the schema too) and keeps
// each answer in the ledger with the time it was read, reporting a change
// since the last one. validate and plan read what the ledger kept, so that
// they work offline, and ask the API (given a token or --fake) only about a
// model nothing describes yet. Which schema judges a model: --schema, else
// the catalog's (read now, else kept), else the built-in one.

// catalogMode says how a command uses the catalog.
type catalogMode struct {
	ledger  string // the ledger whose kept entries are read; "" for none
	refresh bool   // ask about every model (run), not only the unknown ones
}

// catalogRead is what a command learned of the catalog: the entries read
// now, for a run to keep.
type catalogRead struct {
	fresh []store.CatalogEntry
}

// schemas reports whether the catalog gave any schema.
func (r *catalogRead) schemas() bool {
	return r != nil && slices.ContainsFunc(r.fresh, func(e store.CatalogEntry) bool { return e.InputSchema != "" })
}

// keptCatalog reads the entries a ledger keeps, read-only; a ledger that
// is missing or cannot be read keeps none (the command that needs the
// ledger says why).
func keptCatalog(ctx context.Context, path string) map[string]store.CatalogEntry {
	if path == "" {
		return nil
	}
	st, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		return nil
	}
	defer st.Close()
	kept, err := st.Catalog(ctx)
	if err != nil {
		return nil
	}
	return kept
}

// canAsk reports whether the API may be asked: with --fake or a token.
func (a *app) canAsk() bool {
	if a.fake {
		return true
	}
	token, err := a.token()
	return err == nil && token != ""
}

// applyCatalog adds the kept and freshly read schemas of m's models to s
// (not over a --schema) and says on w what changed since the ledger kept
// them. It reports whether any schema was added.
func (a *app) applyCatalog(ctx context.Context, w io.Writer, s *runcomfy.Schemas, given map[string]bool, m *manifest.Manifest, mode catalogMode, kept map[string]store.CatalogEntry, read *catalogRead) bool {
	models := map[string]bool{}
	for i := range m.Jobs {
		models[m.Jobs[i].Model] = true
	}
	var ask []string
	for _, model := range slices.Sorted(maps.Keys(models)) {
		_, isKept := kept[model]
		switch {
		case given[model]:
		case mode.refresh, !isKept && !s.Has(model):
			ask = append(ask, model)
		}
	}
	added := false
	if len(ask) == 0 || !a.canAsk() {
		return false
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	api, cleanup, err := a.client(log, 10, 4)
	if err != nil {
		return false
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(ctx, priceTimeout)
	defer cancel()
	for _, model := range ask {
		info, err := api.Model(ctx, model)
		if err != nil {
			fmt.Fprintf(w, "warning: could not read %s from RunComfy's catalog (%s); %s\n", model, runcomfy.Reason(err), fallbackOf(model, kept, s))
			continue
		}
		e := store.CatalogEntry{Model: model, InputSchema: string(info.InputSchema), BasePriceUSD: string(info.BasePriceUSD),
			PriceUnit: info.PriceUnit, ReadAt: time.Now().UTC().Format(time.RFC3339)}
		if e.InputSchema == "null" {
			e.InputSchema = ""
		}
		read.fresh = append(read.fresh, e)
		if prev, ok := kept[model]; ok && prev.Digest() != e.Digest() {
			fmt.Fprintf(w, "warning: RunComfy's catalog entry for %s changed since it was read at %s: %s; the jobs are checked against the new one\n",
				model, prev.ReadAt, changes(prev, e))
		}
		if e.InputSchema != "" {
			if err := s.Add(model, []byte(e.InputSchema)); err != nil {
				fmt.Fprintf(w, "warning: the catalog's input schema for %s cannot be used (%v); %s\n", model, err, fallbackOf(model, nil, s))
				continue
			}
			added = true
		}
	}
	return added
}

// addKept adds the schemas a ledger keeps to s, except over a --schema.
func addKept(w io.Writer, s *runcomfy.Schemas, given map[string]bool, kept map[string]store.CatalogEntry) {
	for _, model := range slices.Sorted(maps.Keys(kept)) {
		e := kept[model]
		if given[model] || e.InputSchema == "" {
			continue
		}
		if err := s.Add(model, []byte(e.InputSchema)); err != nil {
			fmt.Fprintf(w, "warning: the input schema the ledger keeps for %s cannot be used (%v)\n", model, err)
		}
	}
}

func fallbackOf(model string, kept map[string]store.CatalogEntry, s *runcomfy.Schemas) string {
	if e, ok := kept[model]; ok && e.InputSchema != "" {
		return "using the one the ledger kept from " + e.ReadAt
	}
	if s.Has(model) {
		return "using the built-in schema"
	}
	return "no schema to check its jobs against"
}

// changes says what differs between two catalog entries.
func changes(prev, now store.CatalogEntry) string {
	var out []string
	if prev.InputSchema != now.InputSchema {
		out = append(out, "its input schema")
	}
	if prev.BasePriceUSD != now.BasePriceUSD || prev.PriceUnit != now.PriceUnit {
		out = append(out, fmt.Sprintf("its price (was %s per %s, now %s per %s)", orUnknown(prev.BasePriceUSD), orUnknown(prev.PriceUnit), orUnknown(now.BasePriceUSD), orUnknown(now.PriceUnit)))
	}
	if len(out) == 0 {
		return "its entry"
	}
	if len(out) == 2 {
		return out[0] + " and " + out[1]
	}
	return out[0]
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// keepCatalog saves what a run read of the catalog in its ledger.
func keepCatalog(ctx context.Context, st *store.Store, read *catalogRead) error {
	if read == nil || len(read.fresh) == 0 {
		return nil
	}
	return st.SaveCatalog(ctx, read.fresh)
}

// catalogSchema asks the catalog for model's input schema.
func (a *app) catalogSchema(ctx context.Context, model string) ([]byte, bool) {
	api, cleanup, err := a.client(slog.New(slog.NewTextHandler(io.Discard, nil)), 10, 4)
	if err != nil {
		return nil, false
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(ctx, priceTimeout)
	defer cancel()
	info, err := api.Model(ctx, model)
	if err != nil || len(info.InputSchema) == 0 || string(info.InputSchema) == "null" {
		return nil, false
	}
	return info.InputSchema, true
}

// catalogModelJSON is one model of `models --json` from the catalog.
// Fields may be added, never renamed.
type catalogModelJSON struct {
	Model string `json:"model"`
	Kind  string `json:"kind"`
	// Price is null when the catalog gives none usable.
	Price  *priceJSON `json:"price"`
	Schema string     `json:"schema"` // which schema checks its jobs: catalog, built-in, --schema, none
}

// searchCatalog lists the catalog's models matching search.
func (a *app) searchCatalog(ctx context.Context, s *runcomfy.Schemas, schemaArgs []string, search string) error {
	api, cleanup, err := a.client(slog.New(slog.NewTextHandler(io.Discard, nil)), 10, 4)
	if err != nil {
		return err
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(ctx, priceTimeout)
	defer cancel()
	list, err := api.Models(ctx, search, true, 0)
	if err != nil {
		return fmt.Errorf("search RunComfy's catalog: %w", err)
	}
	out := make([]catalogModelJSON, 0, len(list.Models))
	for _, m := range list.Models {
		c := catalogModelJSON{Model: m.ModelID, Kind: m.Kind, Schema: "none"}
		switch {
		case slices.ContainsFunc(schemaArgs, func(arg string) bool { return strings.HasPrefix(arg, m.ModelID+"=") }):
			c.Schema = "--schema"
		case len(m.InputSchema) > 0 && string(m.InputSchema) != "null":
			c.Schema = "catalog"
		case s.Has(m.ModelID):
			c.Schema = "built-in"
		}
		p := modelPrice{info: m}
		if base, ok := p.price().Base(); ok {
			c.Price = &priceJSON{BaseUSD: base, Unit: m.PriceUnit}
		}
		out = append(out, c)
	}
	if a.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "model\toutputs\tprice\tschema")
	for _, c := range out {
		price := "unknown"
		if c.Price != nil {
			price = usd(c.Price.BaseUSD) + " per " + c.Price.Unit
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Model, cmpOr(c.Kind, "?"), price, c.Schema)
	}
	tw.Flush()
	if !a.quiet {
		fmt.Fprintf(a.stderr, "%d of %d models in RunComfy's catalog; `comfybatch models show MODEL` lists one's input fields\n", len(out), list.Total)
	}
	return nil
}
