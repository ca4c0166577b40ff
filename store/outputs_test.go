package store

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"comfybatch/lifecycle"
)

func urls(id string, gen, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("https://cdn/%s/%d.mp4?gen=%d", id, i, gen)
	}
	return out
}

func saveAll(t *testing.T, s *Store, id string, outputs []string) {
	t.Helper()
	for n, u := range outputs {
		must(t, s.FileSaved(t.Context(), id, File{N: n, URL: u, Path: fmt.Sprintf("%s_%d.mp4", id, n+1), Bytes: int64(10 + n), SHA256: fmt.Sprint("sum", n)}))
	}
}

func fileNs(t *testing.T, s *Store, id string) []int {
	t.Helper()
	var ns []int
	for _, f := range files(t, s, id) {
		ns = append(ns, f.N)
	}
	return ns
}

// TestSetOutputsFewerDropsStaleFiles: a done job with three recorded files
// whose outputs are refreshed to a shorter list must not keep the records of
// the outputs it no longer has, or they would be listed (metadata.jsonl, the
// missing-file check) as files of the job.
func TestSetOutputsFewerDropsStaleFiles(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
	must(t, err)
	toState(t, s, "a", lifecycle.Running)
	first := urls("a", 1, 3)
	must(t, completed(t, s, "a", "succeeded", first, ptr(0.5)))
	saveAll(t, s, "a", first)
	must(t, markDone(t, s, "a"))
	if got := fileNs(t, s, "a"); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Fatalf("files before %v", got)
	}

	must(t, redownload(t, s, "a", "a_2.mp4 is missing on disk"))
	if got := fileNs(t, s, "a"); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Fatalf("Redownload changed the file records: %v", got)
	}

	// More outputs than before: nothing to drop.
	more := urls("a", 2, 4)
	must(t, setOutputs(t, s, "a", more))
	if got := fileNs(t, s, "a"); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Fatalf("after SetOutputs with 4 outputs: files %v, want 0 1 2", got)
	}

	// Fewer: the records of outputs 1 and up go, in the same write.
	fewer := urls("a", 3, 1)
	must(t, setOutputs(t, s, "a", fewer))
	if got := fileNs(t, s, "a"); !reflect.DeepEqual(got, []int{0}) {
		t.Fatalf("after SetOutputs with 1 output: files %v, want only 0", got)
	}
	if j := job(t, s, "a"); j.State != lifecycle.Completed || !reflect.DeepEqual(j.Outputs, fewer) {
		t.Fatalf("job after SetOutputs %+v", j)
	}
	lastEvent(t, s, "a", lifecycle.Completed, lifecycle.Completed, "output URLs refreshed")

	must(t, lastFileSaved(t, s, "a", File{N: 0, URL: fewer[0], Path: "a.mp4", Bytes: 7, SHA256: "new"}))
	fs := files(t, s, "a")
	if len(fs) != 1 || fs[0].URL != fewer[0] || fs[0].Path != "a.mp4" {
		t.Fatalf("files when done again %+v", fs)
	}
	var listed []string
	must(t, s.EachFile(t.Context(), func(id string, f File) error {
		listed = append(listed, id+":"+f.Path)
		return nil
	}))
	if !reflect.DeepEqual(listed, []string{"a:a.mp4"}) {
		t.Fatalf("EachFile lists %v", listed)
	}
	if subs := submissions(t, s, "a"); len(subs) != 1 {
		t.Fatalf("submissions %+v", subs)
	}
}

// TestSetOutputsConflictKeepsFiles: the delete is part of the transition's
// write, so a SetOutputs refused for the job's state deletes nothing. A done
// job is no longer such a state: done → completed is the edge that
// downloads it again, which keeps the job's outputs and files as they are.
func TestSetOutputsConflictKeepsFiles(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp"), spec("b", "fp")})
	must(t, err)
	toState(t, s, "a", lifecycle.Running)
	first := urls("a", 1, 3)
	must(t, completed(t, s, "a", "succeeded", first, nil))
	saveAll(t, s, "a", first)
	must(t, markDone(t, s, "a"))

	must(t, setOutputs(t, s, "a", urls("a", 2, 1))) // done → completed
	if got := fileNs(t, s, "a"); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Fatalf("done → completed deleted files: %v", got)
	}
	if j := job(t, s, "a"); j.State != lifecycle.Completed || !reflect.DeepEqual(j.Outputs, first) {
		t.Fatalf("job %+v", j)
	}

	// A failed job has no edge to completed.
	toState(t, s, "b", lifecycle.Running)
	saveAll(t, s, "b", urls("b", 1, 3)) // left over, however they got there
	must(t, failed(t, s, "b", "failed", "boom", nil))
	before := recordOf(t, s, "b")
	err = setOutputs(t, s, "b", urls("b", 2, 1))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("SetOutputs on a failed job: %v, want ErrConflict", err)
	}
	if got := fileNs(t, s, "b"); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Fatalf("a refused SetOutputs deleted files: %v", got)
	}
	if after := recordOf(t, s, "b"); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refused SetOutputs changed the ledger:\nbefore %+v\nafter  %+v", before, after)
	}
}

// TestCompletedFewerDropsStaleFiles: Completed also replaces a job's outputs;
// file records past the new list's end must not survive it.
func TestCompletedFewerDropsStaleFiles(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
	must(t, err)
	toState(t, s, "a", lifecycle.Running)
	saveAll(t, s, "a", urls("a", 0, 3)) // left over, however they got there
	must(t, completed(t, s, "a", "succeeded", urls("a", 1, 2), nil))
	if got := fileNs(t, s, "a"); !reflect.DeepEqual(got, []int{0, 1}) {
		t.Fatalf("after Completed with 2 outputs: files %v, want 0 1", got)
	}
}
