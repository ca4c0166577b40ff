package runner

import (
	"fmt"
	"os"
	"slices"

	"comfybatch/localfile"
	"comfybatch/manifest"
	"comfybatch/media"
	"comfybatch/runcomfy"
)

// ValidateLocal checks the local files the jobs' inputs name (localfile)
// before anything is paid: each file once, by the rules `validate --media`
// applies to URLs (format, bytes, pixel size, audio length) for the fields
// that name a medium; and, when maxBody > 0 (files sent inline), that each
// job's body stays within it. Problems are reported at the field, for every
// job that uses the file, collapsed as Validate does.
func ValidateLocal(m *manifest.Manifest, rules media.Rules, maxBody int64) error {
	type fileInfo struct {
		size     int64
		mt       string
		problems []media.Problem
	}
	files := map[string]*fileInfo{} // by absolute path
	checked := map[[2]string]bool{} // path and kind, checked once each
	var errs []*manifest.Error
	for i := range m.Jobs {
		j := &m.Jobs[i]
		uses := localUses(j)
		if len(uses) == 0 {
			continue
		}
		body := int64(len(j.Input))
		for _, u := range uses {
			path := localfile.Abs(m.Dir, u.Ref)
			fi := files[path]
			if fi == nil {
				fi = &fileInfo{size: -1}
				files[path] = fi
				if st, err := os.Stat(path); err == nil {
					fi.size = st.Size()
				}
				if head, err := localfile.Head(path); err == nil {
					fi.mt = localfile.MediaType(head, path)
				}
			}
			kind, isMedia := media.KindOfField(u.Field)
			if isMedia && !checked[[2]string{path, kind.String()}] {
				checked[[2]string{path, kind.String()}] = true
				fi.problems = append(fi.problems, checkLocal(path, kind, rules)...)
			}
			at, ok := j.FieldPos(u.Field)
			if !ok {
				at = j.Pos
			}
			name := fieldName(at, runcomfy.FieldError{Field: u.Field}, j.FromDefaults(u.Field))
			for _, p := range fi.problems {
				errs = append(errs, &manifest.Error{Pos: at, JobID: j.ID, Field: name,
					Msg: fmt.Sprintf("local file %s: %s: %s", u.Ref.Path, p.Rule, p.Msg)})
			}
			body += localfile.DataURILen(fi.size, fi.mt) - int64(len(u.Ref.String()))
		}
		if maxBody > 0 && body > maxBody {
			errs = append(errs, &manifest.Error{Pos: j.Pos, JobID: j.ID, Field: "input",
				Msg: fmt.Sprintf("with its local files inline as data: URIs the request body would be %d bytes, over the limit of %s; use smaller files, or URLs", body, bytesOf(maxBody))})
		}
	}
	if out := collapse(errs); len(out) > 0 {
		return out
	}
	return nil
}

// localUses lists a job's local files, in field order.
func localUses(j *manifest.Job) []localfile.Use {
	in, err := j.Values()
	if err != nil {
		return nil
	}
	uses := localfile.Refs(in)
	slices.SortFunc(uses, func(a, b localfile.Use) int {
		if a.Field != b.Field {
			if a.Field < b.Field {
				return -1
			}
			return 1
		}
		return a.Index - b.Index
	})
	return uses
}

// checkLocal judges one file by the media rules.
func checkLocal(path string, kind media.Kind, rules media.Rules) []media.Problem {
	f, err := os.Open(path)
	if err != nil {
		return []media.Problem{{Rule: "read", Msg: err.Error()}}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return []media.Problem{{Rule: "read", Msg: err.Error()}}
	}
	switch kind {
	case media.Image:
		return media.CheckImage(f, st.Size(), rules)
	case media.Audio:
		return media.CheckAudio(f, st.Size(), rules)
	}
	return nil
}

// bytesOf writes a limit in MiB when it is a whole number of them.
func bytesOf(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
