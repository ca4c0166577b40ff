package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

// readmeSection returns the sh code blocks of the README section headed
// title, one command a line, in order: the test runs what the README says,
// so the two cannot drift apart.
func readmeSection(t *testing.T, title string) (commands []string, prose string) {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	inCode := false
	sc := bufio.NewScanner(strings.NewReader(rest))
	var text strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			inCode = !inCode && line == "```sh"
		case inCode && strings.TrimSpace(line) != "":
			commands = append(commands, line)
		case !inCode:
			text.WriteString(line + "\n")
		}
	}
	return commands, text.String()
}

// noFake is how the README tells a reader without a token to follow the
// steps: the commands it names get --fake.
var noFake = regexp.MustCompile("No token yet\\? Add `--fake` to `plan` and `run`")

// TestReadmeFirstBatch runs every command of the README's "A first batch,
// step by step" section in order, as written, through a shell, with the
// built binary first on PATH, in a folder holding a fresh copy of examples/.
// It does so twice: with a token, against the simulated API served over
// loopback (RUNCOMFY_API_BASE stands for RunComfy), and without one, adding
// --fake where the README says to.
func TestReadmeFirstBatch(t *testing.T) {
	t.Parallel()
	commands, prose := readmeSection(t, "A first batch, step by step")
	if len(commands) < 6 || !strings.HasPrefix(commands[0], "comfybatch init ") {
		t.Fatalf("the section's commands do not start with init: %q", commands)
	}
	if !noFake.MatchString(strings.Join(strings.Fields(prose), " ")) {
		t.Fatalf("the section no longer says how to follow it without a token (%s); update this test", noFake)
	}
	srv := runcomfytest.New(runcomfytest.Config{Token: testToken})
	api := srv.Start()
	t.Cleanup(srv.Close)
	for _, pass := range []struct {
		name string
		env  []string
		edit func(string) string
	}{
		{"with a token", tokenEnv(api), func(c string) string { return c }},
		{"with --fake", append([]string{"RUNCOMFY_API_BASE="}, noToken...), func(c string) string {
			for _, sub := range []string{"comfybatch plan ", "comfybatch run "} {
				if strings.HasPrefix(c, sub) && !strings.Contains(c, "--fake") {
					return sub + "--fake " + strings.TrimPrefix(c, sub)
				}
			}
			return c
		}},
	} {
		t.Run(pass.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			copyExamples(t, filepath.Join(dir, "examples"))
			env := append(os.Environ(), "PATH="+filepath.Dir(binPath)+string(os.PathListSeparator)+os.Getenv("PATH"))
			env = append(env, pass.env...)
			for _, line := range commands {
				line = pass.edit(line)
				cmd := exec.Command("bash", "-c", line)
				cmd.Dir, cmd.Env = dir, env
				out, err := cmd.CombinedOutput()
				if code := exitCodeOf(err); code != 0 {
					t.Fatalf("%s\nexit %d:\n%s", line, code, out)
				}
			}
			// What the steps promise: every job of the starter done, its
			// results exported, the example run too.
			data, err := os.ReadFile(filepath.Join(dir, "results.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) != 5 {
				t.Fatalf("results.jsonl has %d lines, want the starter's 5 jobs:\n%s", len(lines), data)
			}
			for _, l := range lines {
				var rec struct{ State string }
				if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.State != "done" {
					t.Fatalf("results line %q: %v", l, err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "examples", "dataset-out", "metadata.jsonl")); err != nil {
				t.Errorf("the example run left no metadata.jsonl: %v", err)
			}
		})
	}
}

// copyExamples copies examples/ as a fresh clone has it: the files git
// tracks, not the ledgers and outputs of runs made in this checkout.
func copyExamples(t *testing.T, to string) {
	t.Helper()
	var names []string
	if out, err := exec.Command("git", "ls-files", "--", "../../examples").Output(); err == nil && len(out) > 0 {
		for _, f := range strings.Fields(string(out)) {
			rel, err := filepath.Rel("../../examples", f) // frames/dawn.png keeps its folder
			if err != nil {
				rel = filepath.Base(f)
			}
			names = append(names, rel)
		}
	} else { // not a checkout: the manifests and what they include
		for _, pat := range []string{"*.yaml", "*.csv", "*.jsonl"} {
			found, _ := filepath.Glob(filepath.Join("../../examples", pat))
			for _, f := range found {
				names = append(names, filepath.Base(f))
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no examples to copy")
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join("../../examples", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(to, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
