package main

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"
)

// starter is the manifest `init` writes: valid as it stands, so that every
// step after it works before a single line is edited.
//
//go:embed starter/jobs.yaml
var starter []byte

func (a *app) initCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "init [FILE]",
		Short: "Write a commented starter manifest (default jobs.yaml) to edit",
		Long: `Init writes a starter manifest, commented line by line, to FILE (default
jobs.yaml; - for stdout). It runs as it stands — validate it, plan it, run it
with --fake — and is meant to be edited: put your prompts and images in.
An existing file is never overwritten (exit 2).`,
		Example: "  comfybatch init\n  comfybatch init dataset.yaml\n  comfybatch init - | less",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("init takes at most one file name (got %d arguments)", len(args))
			}
			return nil
		},
		ValidArgsFunction: completeManifest,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "jobs.yaml"
			if len(args) == 1 {
				path = args[0]
			}
			return a.init(path)
		},
	}
}

func (a *app) init(path string) error {
	if path == "-" {
		_, err := a.stdout.Write(starter)
		return err
	}
	// O_EXCL: a manifest written since the check is not overwritten either.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return usagef("%s already exists; init never overwrites a file: give another name, e.g. comfybatch init new-jobs.yaml", path)
	}
	if err != nil {
		return usagef("init: %v", err)
	}
	if _, err := f.Write(starter); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !a.quiet {
		fmt.Fprintf(a.stderr, "wrote %s, a starter manifest: put your prompts and images in, then: comfybatch validate %s\n", path, path)
	}
	return nil
}
