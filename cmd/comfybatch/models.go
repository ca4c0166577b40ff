package main

import (
	"context"
	"encoding/json"
	"fmt"
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
	cmd := &cobra.Command{
		Use:   "models",
		Short: "List the model ids whose input schema is built in (and those added with --schema)",
		Long: `Models lists, one a line, the model ids whose input is checked against a
schema. Jobs on any other model are checked only against RunComfy's general
rules; add a schema for one with --schema MODEL=PATH. models show MODEL
lists one model's input fields.`,
		Example: "  comfybatch models\n  comfybatch models --json\n  comfybatch models show wan-ai/wan-2-6/flash/image-to-video",
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
	fields, ok := s.Fields(model)
	if !ok {
		hint := "`comfybatch models` lists the models with one; add one with --schema " + model + "=PATH"
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
	out := modelJSON{Model: model, Fields: fields}
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
