package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"comfybatch/outstore"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

// claim holds the ledger to its manifest and API, and the output folder
// (when out is given) to the ledger, or says which is another's: checked
// only, or recorded too when write is set.
func (a *app) claim(ctx context.Context, st *store.Store, manifestPath string, out outstore.Store, log *slog.Logger, write bool) error {
	if err := claimLedger(ctx, st, manifestPath, log, write); err != nil {
		return err
	}
	if err := claimAPI(ctx, st, a.apiIdentity(), write); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return claimOutDir(ctx, out, st.Path(), log, write)
}

// manifestKey is the ledger meta key that names the manifest it belongs to.
const manifestKey = "manifest"

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
	owner, err := st.Meta(ctx, manifestKey)
	if err != nil {
		return err
	}
	barred, moved := contested(owner, abs)
	switch {
	case barred:
		return usagef("the ledger %s belongs to the manifest %s, not %s: running another manifest on it would mix their jobs and files; give this manifest a ledger of its own with --ledger (its default is <manifest stem>.ledger.db beside it)",
			st.Path(), owner, abs)
	case owner != "" && !moved, !write:
		return nil
	case moved:
		log.Warn("the manifest this ledger belongs to is no longer where it was; taking this one for it (moved or renamed)", "was", owner, "now", abs)
	}
	return st.SetMeta(ctx, manifestKey, abs)
}

// outClaim is the file, in an output folder, that names the ledger whose
// outputs it holds.
const outClaim = ".comfybatch-ledger"

// claimOutDir holds an output folder to one ledger. Two ledgers writing one
// folder (two manifests with the same output.dir) would overwrite each
// other's paid outputs under the same names, rewrite each other's
// metadata.jsonl, and sweep each other's partial downloads. The first run
// claims the folder; a run of another ledger is refused, unless the ledger
// that claimed it is gone from where it was (moved or deleted).
//
// A bucket is claimed the same way, by an object of that name: writing it
// is also the first proof that the credentials may write there, before
// anything is paid for.
func claimOutDir(ctx context.Context, out outstore.Store, ledger string, log *slog.Logger, write bool) error {
	abs, err := filepath.Abs(ledger)
	if err != nil {
		return err
	}
	var b []byte
	r, err := out.Open(ctx, outClaim)
	if err == nil {
		b, err = io.ReadAll(r)
		r.Close()
	}
	if err != nil && !outstore.ErrNotExist(err) {
		return fmt.Errorf("output folder: %w", err)
	}
	owner := strings.TrimSpace(string(b))
	barred, moved := contested(owner, abs)
	switch {
	case barred:
		return usagef("the output folder %s holds the outputs of the ledger %s, not %s: two ledgers writing one folder would overwrite each other's paid files; give this manifest its own folder with --out or output.dir",
			out, owner, abs)
	case owner != "" && !moved, !write:
		return nil
	case moved:
		log.Warn("the ledger this output folder belonged to is gone from where it was; the folder is this ledger's now", "was", owner, "now", abs)
	}
	w, err := out.Create(ctx, outClaim)
	if err == nil {
		if _, err = io.WriteString(w, abs+"\n"); err != nil {
			w.Abort()
		} else {
			err = w.Commit()
		}
	}
	if err != nil {
		return usagef("cannot write to the output folder %s: %v", out, err)
	}
	return nil
}

// apiIdentity names the API a run talks to: "simulated" under --fake,
// else the base URL.
func (a *app) apiIdentity() string {
	if a.fake {
		return "simulated"
	}
	return strings.TrimSuffix(strings.TrimRight(a.baseURL(), "/"), "/v1") // the client takes both spellings
}

// claimAPI holds a ledger to the API its requests were made at: the
// simulated API's results are not RunComfy's, and a request id means
// nothing to another API. A run against another API is refused, so that
// a quickstart on --fake is never taken for paid results by a real run.
func claimAPI(ctx context.Context, st *store.Store, api string, write bool) error {
	had, err := st.Meta(ctx, "api")
	if err != nil {
		return err
	}
	if had == "" {
		// A ledger from before the API was recorded: its requests were
		// made somewhere. Its output URLs tell: the simulated API serves
		// files from a loopback host, RunComfy from its CDN.
		outs, err := st.SampleOutputs(ctx, 200)
		if err != nil {
			return err
		}
		var simulated, real bool
		for _, u := range outs {
			if runcomfy.IsLoopbackURL(u) {
				simulated = true
			} else {
				real = true
			}
		}
		if api == "simulated" && len(outs) == 0 {
			// Request ids without outputs to tell where they are from: the
			// simulated API must not be asked about (and fail) what may
			// be RunComfy's paid jobs.
			n, err := st.RequestCount(ctx)
			if err != nil {
				return err
			}
			real = n > 0
		}
		switch {
		case api == "simulated" && real:
			had = "an API other than the simulated one"
		case api != "simulated" && simulated && !runcomfy.IsLoopbackURL(api):
			had = "the simulated API"
		}
	}
	switch {
	case had == api:
		return nil
	case had == "":
		if !write {
			return nil
		}
		return st.SetMeta(ctx, "api", api)
	}
	return usagef("the ledger %s holds jobs run against %s, not %s: their results and request ids mean nothing there; use another ledger (--ledger) and output folder (--out) for this API",
		st.Path(), had, api)
}

// contested tells what a claim held by owner (a path, "" for none) means
// for the file at abs: barred when owner is another file that is still
// there (or cannot be looked at), moved when it is gone from where it was
// — taken for abs moved or renamed.
func contested(owner, abs string) (barred, moved bool) {
	if owner == "" || samePath(owner, abs) {
		return false, false
	}
	if _, err := os.Stat(owner); errors.Is(err, os.ErrNotExist) {
		return false, true
	}
	return true, false
}

// samePath reports whether two paths name one file (a symlink, another
// spelling), not only the same string.
func samePath(a, b string) bool {
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
