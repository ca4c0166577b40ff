package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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
	// Review is the verdict on the file's output ("accepted", "rejected"),
	// null when nobody reviewed it; ReviewNote what the reviewer wrote.
	Review     *store.Verdict `json:"review"`
	ReviewNote string         `json:"review_note"`
}

// writeMetadata rewrites <out>/metadata.jsonl from the ledger: one row per
// file of every done job, the folder layout Hugging Face datasets loads
// directly. It is written aside and renamed, so a reader never sees half.
func writeMetadata(ctx context.Context, st *store.Store, outDir string) error {
	// Not os.CreateTemp: its 0600 would make metadata.jsonl private; this
	// file gets the usual 0644 under the umask, like every output.
	reviews, err := store.ReadReviews(ctx, st.Path(), st)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	var tmp *os.File
	for try := 0; ; try++ {
		name := filepath.Join(outDir, fmt.Sprintf(".metadata-%d-%d.jsonl", os.Getpid(), rand.Int64()))
		tmp, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil || !errors.Is(err, os.ErrExist) || try == 9 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	err = st.EachOutput(ctx, func(o store.Output) error {
		row := metadataRow{FileName: o.File.Path, ID: o.JobID, Model: o.Model, RequestID: o.RequestID, Input: o.Input}
		if r, ok := store.Current(reviews, store.Job{ID: o.JobID, RequestID: o.RequestID}); ok {
			row.Review, row.ReviewNote = &r.Verdict, r.Note
		}
		return enc.Encode(row)
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
