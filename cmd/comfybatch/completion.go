package main

import (
	"strings"

	"github.com/spf13/cobra"

	"comfybatch/lifecycle"
	"comfybatch/store"
)

func (a *app) completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script for comfybatch",
		Long: `Completion prints a script that teaches your shell to complete comfybatch's
commands, flags, manifest files and, for --job, the job ids in the ledger.
Load it in the current shell, or install it once as the examples show.`,
		Example: `  source <(comfybatch completion bash)                      # this shell only
  comfybatch completion bash > ~/.local/share/bash-completion/completions/comfybatch
  comfybatch completion zsh > "${fpath[1]}/_comfybatch"
  comfybatch completion fish > ~/.config/fish/completions/comfybatch.fish`,
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("completion needs the shell's name: bash, zsh, fish or powershell")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), a.stdout
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return usagef("completion %q: want bash, zsh, fish or powershell", args[0])
		},
	}
}

// manifestExts are the names a manifest argument completes to: YAML, and
// JSON (which YAML reads too). Not .db, -wal or .csv: a ledger or an
// include given as the manifest is a mistake the shell should not offer.
var manifestExts = []string{"yaml", "yml", "json"}

// completeManifest offers manifest files (and folders, to reach them) for
// a command's one manifest argument.
func completeManifest(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return manifestExts, cobra.ShellCompDirectiveFilterFileExt
}

// completeJobIDs offers the ids in the manifest's ledger for --job. It
// reads the ledger like status does: read-only, beside a run.
func (a *app) completeJobIDs(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	st, err := store.Open(a.ledgerPath(args[0]), store.Options{ReadOnly: true})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer st.Close()
	var ids []string
	st.EachJobState(cmd.Context(), func(id string, _ lifecycle.State) error {
		if strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
		return nil
	})
	return ids, cobra.ShellCompDirectiveNoFileComp
}

// fixedValues completes a flag from a list.
func fixedValues(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}
