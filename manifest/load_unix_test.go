//go:build unix

package manifest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestLoadFromPipe: a manifest that can only be read once (a pipe, process
// substitution) is read whole instead of in two passes.
func TestLoadFromPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.yaml")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	src := "model: m\njobs:\n  - {id: a, input: {prompt: x}}\n  - {id: b, input: {prompt: y}}\n"
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		f.WriteString(src)
		f.Close()
	}()
	m, err := Load(path, Options{})
	if err != nil || len(m.Jobs) != 2 {
		t.Fatalf("Load from a pipe: %v, %v", m, err)
	}
	if _, ok := m.Job("b"); !ok {
		t.Error("job b missing")
	}
}
