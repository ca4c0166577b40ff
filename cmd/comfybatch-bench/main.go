// Command comfybatch-bench measures the comfybatch binary at scale, from the
// outside, the way a user meets it: wall time and peak RSS of `run` on a
// finished 100,000-job ledger, and RSS with 10,000 jobs in flight. The
// in-process figures (jobs/s, polling) are `go test -bench` benchmarks in
// runner/.
//
//	go build -o /tmp/comfybatch ./cmd/comfybatch
//	go run ./cmd/comfybatch-bench finished -bin /tmp/comfybatch -jobs 100000
//	go run ./cmd/comfybatch-bench inflight -bin /tmp/comfybatch -jobs 10000
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

const model = "wan-ai/wan-2-6/flash/image-to-video"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: comfybatch-bench finished|inflight -bin PATH [-jobs N] [-dir DIR] [-format yaml|csv|jsonl]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	bin := fs.String("bin", "", "the comfybatch binary to measure")
	jobs := fs.Int("jobs", 0, "number of jobs (default 100000 for finished, 10000 for inflight)")
	dir := fs.String("dir", "", "work folder (default a new temporary one, removed at the end)")
	runs := fs.Int("runs", 3, "finished: how many times to run it")
	format := fs.String("format", "yaml", "where the jobs are written: yaml (a jobs list), csv or jsonl (an included file)")
	fs.Parse(os.Args[2:])
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "-bin is required: go build -o /tmp/comfybatch ./cmd/comfybatch")
		os.Exit(2)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "comfybatch-bench-")
		check(err)
		defer os.RemoveAll(d)
		*dir = d
	}
	check(os.MkdirAll(*dir, 0o755))
	var err error
	switch os.Args[1] {
	case "finished":
		err = finished(*bin, *dir, *format, or(*jobs, 100_000), *runs)
	case "prepare-finished": // finished's first step, in a process of its own
		err = prepareFinished(*dir, *format, or(*jobs, 100_000))
	case "inflight":
		err = inflight(*bin, *dir, *format, or(*jobs, 10_000))
	default:
		err = fmt.Errorf("unknown benchmark %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func or(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// writeManifest writes n valid jobs, as a YAML jobs list or in an included
// CSV or JSONL file, and parses them back, so the ledger can be prepared with
// exactly the ids and fingerprints a run will compute.
func writeManifest(dir, format string, n int) (string, *manifest.Manifest, error) {
	var b, inc strings.Builder
	fmt.Fprintf(&b, "model: %s\noutput: {dir: out}\ndefaults: {duration: 5, resolution: 720P}\n", model)
	switch format {
	case "yaml":
		b.WriteString("jobs:\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "  - id: j%06d\n    input: {prompt: \"a fox in the snow, take %d\", img_url: \"https://example.com/fox.png\", seed: %d}\n", i, i, i)
		}
	case "csv":
		b.WriteString("include: [jobs.csv]\n")
		inc.WriteString("id,prompt,img_url,seed\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&inc, "j%06d,\"a fox in the snow, take %d\",https://example.com/fox.png,%d\n", i, i, i)
		}
	case "jsonl":
		b.WriteString("include: [jobs.jsonl]\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&inc, `{"id": "j%06d", "input": {"prompt": "a fox in the snow, take %d", "img_url": "https://example.com/fox.png", "seed": %d}}`+"\n", i, i, i)
		}
	default:
		return "", nil, fmt.Errorf("unknown -format %q: want yaml, csv or jsonl", format)
	}
	if format != "yaml" {
		if err := os.WriteFile(filepath.Join(dir, "jobs."+format), []byte(inc.String()), 0o644); err != nil {
			return "", nil, err
		}
	}
	path := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", nil, err
	}
	// CSV cells are typed by the model's schema, as the run does.
	schemas, err := runcomfy.BuiltinSchemas()
	if err != nil {
		return "", nil, err
	}
	m, err := manifest.Load(path, manifest.Options{FieldType: schemas.FieldType})
	return path, m, err
}

// finished prepares a ledger in which every job is done with its file on
// disk, then runs `comfybatch run` on it: the run has nothing to do but to
// find that out, which is what a user's rerun of a finished batch costs.
//
// The ledger is prepared by another process: a child's peak RSS as the
// kernel reports it (ru_maxrss) is at least its parent's high-water mark at
// the fork, so a parent that has held the 100,000 jobs would be measured in
// place of the run.
func finished(bin, dir, format string, n, runs int) error {
	start := time.Now()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	prep := exec.Command(exe, "prepare-finished", "-bin", bin, "-dir", dir, "-format", format, "-jobs", strconv.Itoa(n))
	prep.Stdout, prep.Stderr = os.Stdout, os.Stderr
	if err := prep.Run(); err != nil {
		return fmt.Errorf("preparing the ledger: %w", err)
	}
	fmt.Printf("prepared %d done jobs with their files in %.1fs\n", n, time.Since(start).Seconds())
	path, ledger, out := filepath.Join(dir, "jobs.yaml"), filepath.Join(dir, "jobs.ledger.db"), filepath.Join(dir, "out")
	for i := 0; i < runs; i++ {
		cmd := exec.Command(bin, "run", path, "--fake", "-q", "--ledger", ledger, "--out", out)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		t := time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("run: %w", err)
		}
		wall := time.Since(t)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		fmt.Printf("run %d on a finished %d-job ledger (%s): wall %.2fs, user %.2fs, sys %.2fs, peak RSS %d MB\n", i+1, n, format,
			wall.Seconds(), tv(ru.Utime), tv(ru.Stime), ru.Maxrss/1024)
	}
	return nil
}

// prepareFinished writes the manifest and a ledger in which every job is done
// with its file on disk.
func prepareFinished(dir, format string, n int) error {
	_, m, err := writeManifest(dir, format, n)
	if err != nil {
		return err
	}
	ledger, out := filepath.Join(dir, "jobs.ledger.db"), filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// The fast ledger is for preparing only; the run opens it durable.
	st, err := store.Open(ledger, store.Options{NoSync: true})
	if err != nil {
		return err
	}
	specs := make([]store.Spec, len(m.Jobs))
	for i, j := range m.Jobs {
		specs[i] = store.Spec{ID: j.ID, Model: j.Model, Input: j.Input, Fingerprint: j.Fingerprint()}
	}
	if _, err := st.Sync(context.Background(), specs); err != nil {
		return err
	}
	work := make(chan int)
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := finishJob(st, out, specs[i].ID, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range specs {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	if err, failed := <-errs; failed {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	return nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func finishJob(st *store.Store, out, id string, i int) error {
	ctx := context.Background()
	if err := st.Apply(ctx, id, lifecycle.Step{To: lifecycle.Submitting}); err != nil {
		return err
	}
	req := fmt.Sprintf("req-%06d", i)
	if err := st.Apply(ctx, id, lifecycle.Step{To: lifecycle.Queued, RequestID: req, Detail: "request " + req}); err != nil {
		return err
	}
	url := "http://localhost:1/files/" + req + "/0.mp4"
	cost := 0.25
	if err := st.Apply(ctx, id, lifecycle.Step{To: lifecycle.Completed, Remote: "completed", Outputs: []string{url}, Cost: &cost,
		Detail: "1 output(s)"}); err != nil {
		return err
	}
	data := []byte("not a real video " + id)
	if err := os.WriteFile(filepath.Join(out, id+".mp4"), data, 0o644); err != nil {
		return err
	}
	return st.Apply(ctx, id, lifecycle.Step{To: lifecycle.Done},
		store.File{N: 0, URL: url, Path: id + ".mp4", Bytes: int64(len(data)), SHA256: "0"})
}

// inflight runs n jobs at -j n against the simulated API in another process,
// whose jobs wait in its queue for ten minutes, and reads the run's RSS once
// every job is submitted and being polled; then interrupts it.
func inflight(bin, dir, format string, n int) error {
	path, _, err := writeManifest(dir, format, n)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	fake := exec.Command(bin, "fake-server", "--addr", addr, "--queue-time", "10m", "--jitter", "0")
	fake.Stderr = os.Stderr
	if err := fake.Start(); err != nil {
		return err
	}
	defer func() { fake.Process.Signal(os.Interrupt); fake.Wait() }()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			return fmt.Errorf("fake-server did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	ledger := filepath.Join(dir, "jobs.ledger.db")
	run := exec.Command(bin, "run", path, "-q", "--api-base", "http://"+addr, "--ledger", ledger,
		"-j", strconv.Itoa(n), "--rps", "5000")
	run.Env = append(os.Environ(), "RUNCOMFY_TOKEN=bench-token-local")
	run.Stderr = os.Stderr
	t := time.Now()
	if err := run.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for {
		if ctx.Err() != nil {
			run.Process.Kill()
			return fmt.Errorf("not every job in flight after 5 minutes")
		}
		time.Sleep(500 * time.Millisecond)
		if queued(ledger) >= n {
			break
		}
	}
	submitted := time.Since(t)
	// Let every job be polled a few times before reading.
	time.Sleep(20 * time.Second)
	rss, hwm := memory(run.Process.Pid)
	fmt.Printf("%d jobs in flight (all submitted in %.1fs): RSS %d MB, peak %d MB, %.1f KB per job in flight\n",
		n, submitted.Seconds(), rss/1024, hwm/1024, float64(rss)/float64(n))
	run.Process.Signal(os.Interrupt)
	run.Wait() // exits 130: the jobs are still running at the fake
	return nil
}

func queued(ledger string) int {
	st, err := store.Open(ledger, store.Options{ReadOnly: true})
	if err != nil {
		return 0
	}
	defer st.Close()
	c, err := st.Counts(context.Background())
	if err != nil {
		return 0
	}
	return lifecycle.Count(c, lifecycle.State.InFlight)
}

// memory reads VmRSS and VmHWM (peak) of a process, in KB.
func memory(pid int) (rss, hwm int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}
