package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"comfybatch/runcomfy"
	"comfybatch/runner"
	"comfybatch/suggest"
)

func (a *app) modelsCommand() *cobra.Command {
	var schemaArgs []string
	var search string
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Search RunComfy's model catalog (with a token or --fake); without one, list the built-in schemas",
		Long: `Models searches RunComfy's model catalog (GET /v1/models) when the API can
be asked (a token, or --fake): each model's id, what it outputs, its price
and where its input schema comes from (catalog, built-in, --schema, or
none). --search keeps the models whose id or name holds TEXT.

Without a token it lists, one a line, the model ids whose input schema is
built in or added with --schema MODEL=PATH. models show MODEL lists one
model's input fields.`,
		Example: "  comfybatch models\n  comfybatch models --search wan --json\n  comfybatch models show wan-ai/wan-2-6/flash/image-to-video",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := schemas(schemaArgs)
			if err != nil {
				return err
			}
			if a.canAsk() {
				return a.searchCatalog(cmd.Context(), s, schemaArgs, search)
			}
			if search != "" {
				return usagef("--search looks in RunComfy's catalog, which needs a token (RUNCOMFY_TOKEN or --token-file) or --fake; without one, `comfybatch models` lists the built-in schemas")
			}
			ids := s.Models()
			if a.jsonOut {
				return json.NewEncoder(a.stdout).Encode(ids)
			}
			for _, id := range ids {
				fmt.Fprintln(a.stdout, id)
			}
			return nil
		},
	}
	addSchemaFlag(cmd.PersistentFlags(), &schemaArgs)
	cmd.Flags().StringVar(&search, "search", "", "keep the catalog's models whose id or name holds `TEXT`")
	cmd.AddCommand(a.modelsShowCommand(&schemaArgs))
	return cmd
}

func (a *app) modelsShowCommand(schemaArgs *[]string) *cobra.Command {
	return &cobra.Command{
		Use:   "show MODEL",
		Short: "List a model's input fields: type, required, default, allowed values; and its price",
		Long: `Show lists the input fields of a model whose schema comfybatch has (built
in, or given with --schema): each field's type, whether it is required, the
model's default (which RunComfy applies: comfybatch sends only what the
manifest says) and the values allowed. The price comes from the API
(GET /v1/models/{id}): with a token or --fake; without one it is unknown.`,
		Example: "  comfybatch models show wan-ai/wan-2-6/flash/image-to-video\n  comfybatch models show wan-ai/wan-2-6/image-to-video --json",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("models show needs one model id (got %d arguments); `comfybatch models` lists them", len(args))
			}
			return nil
		},
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			s, err := schemas(nil)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return s.Models(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.modelsShow(cmd.Context(), args[0], *schemaArgs)
		},
	}
}

// modelJSON is what `models show --json` prints. Fields may be added, never
// renamed.
type modelJSON struct {
	Model  string           `json:"model"`
	Schema string           `json:"schema"` // where the fields come from: catalog, built-in, --schema
	Fields []runcomfy.Field `json:"fields"`
	// Price is null when unknown; PriceReason says why.
	Price       *priceJSON `json:"price"`
	PriceReason string     `json:"price_reason,omitempty"`
}

type priceJSON struct {
	BaseUSD float64 `json:"base_usd"`
	Unit    string  `json:"unit"` // "second" (times the job's duration) or "output"
}

func (a *app) modelsShow(ctx context.Context, model string, schemaArgs []string) error {
	s, err := schemas(schemaArgs)
	if err != nil {
		return err
	}
	source := "built-in"
	if slices.ContainsFunc(schemaArgs, func(arg string) bool { return strings.HasPrefix(arg, model+"=") }) {
		source = "--schema"
	} else if a.canAsk() {
		// The catalog's schema, when it has one, is the one jobs are
		// checked against (catalog.go).
		if schema, ok := a.catalogSchema(ctx, model); ok {
			if err := s.Add(model, schema); err == nil {
				source = "catalog"
			}
		}
	}
	fields, ok := s.Fields(model)
	if !ok {
		hint := "`comfybatch models` lists the models with one (RunComfy's catalog, with a token or --fake); add one with --schema " + model + "=PATH"
		if known, ok := runner.ModelTypo(model, s.Models()); ok {
			hint = fmt.Sprintf("did you mean %q?", known)
		} else if known, ok := suggest.Closest(model, s.Models()); ok {
			hint = fmt.Sprintf("did you mean %q? ", known) + hint
		}
		return usagef("no input schema for %s; %s", model, hint)
	}
	log, err := a.logger()
	if err != nil {
		return err
	}
	out := modelJSON{Model: model, Schema: source, Fields: fields}
	prices, reason := a.prices(ctx, log, []string{model})
	if p, ok := prices[model]; ok {
		if base, ok := p.price().Base(); ok {
			out.Price = &priceJSON{BaseUSD: base, Unit: p.info.PriceUnit}
		} else {
			reason = p.err
		}
	}
	if out.Price == nil {
		out.PriceReason = cmpOr(reason, "price unknown")
	}
	if a.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printModel(a.stdout, out)
	return nil
}

func cmpOr(s, or string) string {
	if s == "" {
		return or
	}
	return s
}

// printModel writes a model's fields as a table for a person.
func printModel(w interface{ Write([]byte) (int, error) }, m modelJSON) {
	fmt.Fprintln(w, m.Model)
	if m.Price != nil {
		fmt.Fprintf(w, "price: %s per %s\n", usd(m.Price.BaseUSD), m.Price.Unit)
	} else {
		fmt.Fprintf(w, "price: unknown: %s\n", m.PriceReason)
	}
	fmt.Fprintf(w, "input schema: %s\n", m.Schema)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "field\ttype\trequired\tdefault\tallowed")
	for _, f := range m.Fields {
		req := "no"
		if f.Required {
			req = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Name, cmpOr(f.Type, "any"), req, shortJSON(f.Default, 24), allowed(f))
	}
	tw.Flush()
	fmt.Fprintln(w, "Defaults are the model's own: RunComfy applies them; comfybatch sends only what the manifest says.")
}

// allowed says which values a field takes, when its schema says.
func allowed(f runcomfy.Field) string {
	switch {
	case len(f.Enum) > 0:
		vals := make([]string, len(f.Enum))
		for i, v := range f.Enum {
			vals[i] = string(v)
		}
		return strings.Join(vals, ", ")
	case f.Minimum != nil && f.Maximum != nil:
		return num(*f.Minimum) + ".." + num(*f.Maximum)
	case f.Minimum != nil:
		return ">= " + num(*f.Minimum)
	case f.Maximum != nil:
		return "<= " + num(*f.Maximum)
	}
	return ""
}

func num(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// shortJSON spells a value on one line, cut to n runes.
func shortJSON(v json.RawMessage, n int) string {
	s := strings.Join(strings.Fields(string(v)), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
