package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"comfybatch/runcomfy/runcomfytest"
)

// awsEnv is an S3 credential chain made of the environment alone: no
// profile file, no instance metadata, so a test never looks for a cloud.
func awsEnv(t *testing.T, secret string) []string {
	none := filepath.Join(t.TempDir(), "none")
	return []string{"AWS_ACCESS_KEY_ID=test-key", "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_SESSION_TOKEN=",
		"AWS_REGION=us-east-1", "AWS_PROFILE=", "AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONTAINER_CREDENTIALS_FULL_URI=", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="}
}

// `run --out s3://...` writes every output and metadata.jsonl to the
// bucket, with credentials from the environment that are never printed or
// stored; a rerun finds everything there and downloads nothing; an object
// deleted from the bucket is downloaded again on the next run, without
// submitting anything.
func TestRunToS3Bucket(t *testing.T) {
	t.Parallel()
	backend := s3mem.New()
	if err := backend.CreateBucket("outs"); err != nil {
		t.Fatal(err)
	}
	s3 := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(s3.Close)
	srv := runcomfytest.New(runcomfytest.Config{Token: testToken})
	api := srv.Start()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	manifest, jobs := writeManifest(t, dir, 3)
	const secret = "s3-secret-never-shown-9f1c"
	env := append(tokenEnv(api), awsEnv(t, secret)...)
	out := "s3://outs/batch-1?use_path_style=true&endpoint=" + url.QueryEscape(s3.URL)
	objects := func() map[string][]byte {
		list, err := backend.ListBucket("outs", &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string][]byte{}
		for _, c := range list.Contents {
			o, err := backend.GetObject("outs", c.Key, nil)
			if err != nil {
				t.Fatal(err)
			}
			m[c.Key], _ = io.ReadAll(o.Contents)
			o.Contents.Close()
		}
		return m
	}

	r := runBinary(t, env, "run", manifest, "--out", out, "--poll-max", "50ms")
	if r.code != 0 {
		t.Fatalf("run: exit %d\n%s", r.code, r.stderr)
	}
	got := objects()
	for _, j := range jobs {
		if len(got["batch-1/"+j.ID+".mp4"]) == 0 {
			t.Fatalf("no object for %s in the bucket: %v", j.ID, keysOf(got))
		}
	}
	if n := bytes.Count(got["batch-1/metadata.jsonl"], []byte("\n")); n != len(jobs) {
		t.Fatalf("metadata.jsonl in the bucket has %d rows, want %d", n, len(jobs))
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Fatalf("output.dir was made though --out names a bucket (%v)", err)
	}
	res := runBinary(t, env, "results", manifest, "--out", out)
	if !strings.Contains(res.stdout, `"local_path":"s3://outs/batch-1/clip-0000.mp4"`) {
		t.Fatalf("results do not locate the files in the bucket:\n%s", res.stdout)
	}
	for _, text := range []string{r.stdout, r.stderr, res.stdout, res.stderr} {
		if strings.Contains(text, secret) {
			t.Fatal("the bucket's secret key was printed")
		}
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(secret)) {
				t.Errorf("the bucket's secret key is stored in %s", p)
			}
		}
		return err
	})

	files := srv.Stats().Files
	if r := runBinary(t, env, "run", manifest, "--out", out, "--poll-max", "50ms"); r.code != 0 || srv.Stats().Files != files {
		t.Fatalf("rerun with everything in the bucket: exit %d, %d file downloads (want none)\n%s", r.code, srv.Stats().Files-files, r.stderr)
	}

	if _, err := backend.DeleteObject("outs", "batch-1/clip-0001.mp4"); err != nil {
		t.Fatal(err)
	}
	submits := srv.Stats().Submits
	if r := runBinary(t, env, "run", manifest, "--out", out, "--poll-max", "50ms"); r.code != 0 {
		t.Fatalf("rerun after an object was deleted: exit %d\n%s", r.code, r.stderr)
	}
	if again := objects()["batch-1/clip-0001.mp4"]; !bytes.Equal(again, got["batch-1/clip-0001.mp4"]) {
		t.Fatalf("the deleted object came back with %d bytes, want the %d it had", len(again), len(got["batch-1/clip-0001.mp4"]))
	}
	if srv.Stats().Submits != submits {
		t.Fatal("a missing object caused a resubmission")
	}
}

func keysOf[V any](m map[string]V) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

// `run --upload s3://...` puts each local input in the bucket once per
// content and submits a pre-signed URL in its place, whose GET answers the
// file's bytes.
func TestRunUploadsLocalInputs(t *testing.T) {
	t.Parallel()
	runUploads(t, false)
}

// The manifest's upload key does what --upload does.
func TestManifestUploadKey(t *testing.T) {
	t.Parallel()
	runUploads(t, true)
}

func runUploads(t *testing.T, viaManifest bool) {
	backend := s3mem.New()
	if err := backend.CreateBucket("ins"); err != nil {
		t.Fatal(err)
	}
	var puts atomic.Int64
	s3h := gofakes3.New(backend).Server()
	s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			puts.Add(1)
		}
		s3h.ServeHTTP(w, r)
	}))
	t.Cleanup(s3.Close)
	// The simulated API fetches each input URL, as a model would, and keeps
	// the sha256 of what it got.
	srv := runcomfytest.New(runcomfytest.Config{Token: testToken, FetchInputs: true})
	api := srv.Start()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	frames := map[string]bool{} // the frames' bytes
	if err := os.MkdirAll(filepath.Join(dir, "frames"), 0o755); err != nil {
		t.Fatal(err)
	}
	pngs, _ := filepath.Glob("../../examples/frames/*.png")
	for _, p := range pngs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		frames[string(data)] = true
		os.WriteFile(filepath.Join(dir, "frames", filepath.Base(p)), data, 0o644)
	}
	yaml, err := os.ReadFile("../../examples/frames.yaml")
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "frames.yaml")
	env := append(tokenEnv(api), awsEnv(t, "s3-secret-never-shown-77aa")...)
	up := "s3://ins/uploads?use_path_style=true&endpoint=" + url.QueryEscape(s3.URL)
	args := []string{"run", manifest, "--poll-max", "50ms"}
	if viaManifest {
		yaml = append([]byte("upload: \""+up+"\"\n"), yaml...)
	} else {
		args = append(args, "--upload", up)
	}
	os.WriteFile(manifest, yaml, 0o644)
	if r := runBinary(t, env, args...); r.code != 0 {
		t.Fatalf("%v: exit %d\n%s", args, r.code, r.stderr)
	}
	if n := puts.Load(); n != int64(len(frames)) {
		t.Fatalf("%d uploads for %d distinct frames", n, len(frames))
	}
	sums := map[string]bool{}
	for f := range frames {
		sum := sha256.Sum256([]byte(f))
		sums[hex.EncodeToString(sum[:])] = true
	}
	jobs := 0
	for _, j := range srv.Jobs() {
		var in struct {
			ImgURL string `json:"img_url"`
		}
		if err := json.Unmarshal(j.Input, &in); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(in.ImgURL, s3.URL+"/ins/uploads/inputs/") || !strings.Contains(in.ImgURL, "X-Amz-Signature=") {
			t.Fatalf("submitted img_url %.120s is not a pre-signed URL into the bucket", in.ImgURL)
		}
		if got := j.Fetched["img_url"]; !sums[got] {
			t.Fatalf("the simulated API fetched %.120s and got bytes of sha256 %q, no frame's", in.ImgURL, got)
		}
		jobs++
	}
	if jobs != 2*len(frames) {
		t.Fatalf("%d distinct submissions, want %d", jobs, 2*len(frames))
	}
}
