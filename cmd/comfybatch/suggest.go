package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"comfybatch/suggest"
)

// unknownCommand is the root's own action: comfybatch alone shows the help,
// anything else is a command that does not exist, a usage error (exit 2)
// with the nearest command when one is near.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() || c.Name() == "help" {
			names = append(names, c.Name())
		}
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s, ok := suggest.Closest(args[0], names); ok {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return usagef("%s (see `comfybatch --help` for the commands)", msg)
}

var (
	unknownLong  = regexp.MustCompile(`^unknown flag: --(\S+)$`)
	unknownShort = regexp.MustCompile(`^unknown shorthand flag: '(.)' in -(\S+)$`)
)

// flagError makes every flag mistake a usage error (exit 2) and, for a flag
// that does not exist, names the one probably meant: --jsno for --json, -J
// for -j, and -fake (one dash) for --fake.
func flagError(cmd *cobra.Command, err error) error {
	// `comfybatch rn x.yaml -j 3`: the root parsed the flags of a command
	// that does not exist; the command is the mistake to report.
	if !cmd.HasParent() && cmd.Flags().NArg() > 0 {
		return unknownCommand(cmd, cmd.Flags().Args())
	}
	var typed string
	var byShorthand string
	if m := unknownLong.FindStringSubmatch(err.Error()); m != nil {
		typed, _, _ = strings.Cut(m[1], "=")
	} else if m := unknownShort.FindStringSubmatch(err.Error()); m != nil {
		word, _, _ := strings.Cut(m[2], "=")
		if len(word) > 1 {
			typed = word // a long flag given one dash
		}
		byShorthand = m[1]
	} else {
		return usagef("%v (see `%s --help`)", err, cmd.CommandPath())
	}
	var names []string
	var shorthand string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		names = append(names, f.Name)
		if byShorthand != "" && f.Shorthand != "" && strings.EqualFold(f.Shorthand, byShorthand) && f.Shorthand != byShorthand {
			shorthand = f.Shorthand
		}
	})
	hint := ""
	switch s, ok := suggest.Closest(typed, names); {
	case typed != "" && contains(names, typed):
		hint = "--" + typed // -fake: the flag exists, with two dashes
	case typed != "" && ok:
		hint = "--" + s
	case shorthand != "":
		hint = "-" + shorthand
	}
	msg := err.Error()
	if hint != "" {
		msg += fmt.Sprintf("; did you mean %s?", hint)
	}
	return usagef("%s (see `%s --help`)", msg, cmd.CommandPath())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// helpCommand is cobra's help command, except that help for a command that
// does not exist is a usage error, like the command itself.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help shows a command's help: what it does, its flags and examples.",
		ValidArgsFunction: func(c *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, sub := range c.Root().Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			root := c.Root()
			target, rest, err := root.Find(args)
			if err != nil || target == root && len(args) > 0 || len(rest) > 0 && len(target.Commands()) > 0 {
				if target == nil || target == root {
					return unknownCommand(root, args)
				}
				return unknownCommand(target, rest)
			}
			return target.Help()
		},
	}
}
