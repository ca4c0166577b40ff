package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) modelsCommand() *cobra.Command {
	var schemaArgs []string
	cmd := &cobra.Command{
		Use:   "models",
		Short: "List the model ids whose input schema is built in (and those added with --schema)",
		Long: `Models lists, one a line, the model ids whose input is checked against a
schema. Jobs on any other model are checked only against RunComfy's general
rules; add a schema for one with --schema MODEL=PATH.`,
		Example: "  comfybatch models\n  comfybatch models --json",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("models takes no arguments (got %q)", args)
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
	addSchemaFlag(cmd.Flags(), &schemaArgs)
	return cmd
}
