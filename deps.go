//go:build tools

// Package tools pins the modules the project uses before every package
// imports them; it is never built.
package tools

import (
	_ "github.com/mattn/go-sqlite3"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/image/webp"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/time/rate"
	_ "gopkg.in/yaml.v3"
)
