package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"comfybatch/store"
)

// MetadataFile is the name of the dataset index in the output folder.
const MetadataFile = "metadata.jsonl"

type metadataRow struct {
	FileName  string          `json:"file_name"`
	ID        string          `json:"id"`
	Model     string          `json:"model"`
	RequestID string          `json:"request_id"`
	Input     json.RawMessage `json:"input"`
}

// writeMetadata rewrites <out>/metadata.jsonl from the ledger: one row per
// file of every done job, the folder layout Hugging Face datasets loads
// directly. It is written aside and renamed, so a reader never sees half.
func writeMetadata(ctx context.Context, st *store.Store, outDir string) error {
	tmp, err := os.CreateTemp(outDir, ".metadata-*.jsonl")
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	err = st.EachOutput(ctx, func(o store.Output) error {
		return enc.Encode(metadataRow{FileName: o.File.Path, ID: o.JobID, Model: o.Model, RequestID: o.RequestID, Input: o.Input})
	})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(outDir, MetadataFile))
	}
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	return nil
}
