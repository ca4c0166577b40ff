package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	"comfybatch/store"
)

// claimLedger holds a ledger to the one manifest it belongs to. A ledger
// records every request id of its manifest's jobs and writes their files;
// run with another manifest, it would take that manifest's jobs for changed
// ones, archive and overwrite outputs, and write another folder's
// metadata.jsonl. The first run claims it; a later command with another
// manifest is refused, unless the manifest it belongs to is gone from where
// it was (moved or renamed), which is taken for the same manifest.
func claimLedger(ctx context.Context, st *store.Store, manifestPath string, log *slog.Logger, write bool) error {
	abs, err := filepath.Abs(manifestPath)
	if err != nil {
		return err
	}
	owner, err := st.Owner(ctx)
	if err != nil {
		return err
	}
	switch {
	case owner == abs:
		return nil
	case owner == "":
		if !write {
			return nil
		}
		return st.Claim(ctx, abs)
	}
	if _, err := os.Stat(owner); err == nil || !errors.Is(err, os.ErrNotExist) {
		return usagef("the ledger %s belongs to the manifest %s, not %s: running another manifest on it would mix their jobs and files; give this manifest a ledger of its own with --ledger (its default is <manifest stem>.ledger.db beside it)",
			st.Path(), owner, abs)
	}
	if !write {
		return nil
	}
	log.Warn("the manifest this ledger belongs to is no longer where it was; taking this one for it (moved or renamed)", "was", owner, "now", abs)
	return st.Claim(ctx, abs)
}
