package proctest

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestChildren(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here:", err)
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	pids, err := Children(os.Getpid())
	_ = child.Process.Kill()
	_ = child.Wait()
	if err != nil || !slices.Contains(pids, child.Process.Pid) {
		t.Fatalf("children %v, %v; want %d among them", pids, err, child.Process.Pid)
	}
	if pids, err := Children(child.Process.Pid); err != nil || len(pids) != 0 {
		t.Errorf("children of a process that has none: %v, %v", pids, err)
	}
}
