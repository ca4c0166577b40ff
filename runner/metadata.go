package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"

	"comfybatch/outstore"
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
// directly. It is written aside and put in place whole (a renamed
// temporary file in a folder, one completed upload in a bucket), so a
// reader never sees half.
func writeMetadata(ctx context.Context, st *store.Store, out outstore.Store) error {
	reviews, err := store.ReadReviews(ctx, st.Path(), st)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	tmp, err := out.Create(ctx, MetadataFile)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
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
	if err != nil {
		tmp.Abort()
		return fmt.Errorf("metadata: %w", err)
	}
	if err := tmp.Commit(); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	return nil
}
