package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/proctest"
)

// writePolicy writes a bundle directory of one module under revision.
func writePolicy(t *testing.T, revision, rego string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tenant"), 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := `{"revision":"` + revision + `","roots":["tenant"]}`
	if err := os.WriteFile(filepath.Join(dir, ".manifest"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tenant", "decision.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	pids, err := proctest.Children(pid)
	if err != nil {
		t.Skip("no /proc here:", err)
	}
	return pids
}

// An organization's policy that ends the process evaluating it (22 lines:
// unify a value of 2^19 shared leaves, and the goroutine stack overflows)
// ends its worker, through the real binary: the decision is denied
// policy_error, the service and another organization go on, the worker
// holds none of the service's secrets, and no worker outlives the service.
func TestAPolicyThatEndsItsProcessDoesNotEndTheService(t *testing.T) {
	var rego strings.Builder
	rego.WriteString("package tenant\n\nx0 := {\"a\": 1, \"b\": 2}\n")
	for i := 1; i <= 19; i++ {
		fmt.Fprintf(&rego, "x%d := {k: x%d | some k in [\"a\", \"b\"]}\n", i, i-1)
	}
	rego.WriteString(`
decision := {"allow": true} if input.action.type != "payment.send"

decision := {"allow": true} if {
	input.action.type == "payment.send"
	x19 = x19
}
`)
	crash := writePolicy(t, "crash-1", rego.String())
	permissive := writePolicy(t, "allow-all-1", "package tenant\n\ndecision := {\"allow\": true}\n")
	const master = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
	env := []string{"AGENTSIGNA_MASTER_KEY=" + master, "AGENTSIGNA_DATA_DIR=" + filepath.Join(t.TempDir(), "data")}
	evil := cliOrg(t, env, "evil", crash, "crash-1", "low")
	other := cliOrg(t, env, "other", permissive, "allow-all-1", "low")
	ta := freeAddr(t)
	p := startServeAt(t, env, ta, "--public-url", "http://"+ta)

	ec := newAgentClient(t, p, evil, env)
	if status, out := ec.do("POST", "/v1/decisions", `{"action":{"type":"report.generate"}}`); status != 200 || out["outcome"] != "allow" {
		t.Fatalf("evil's plain action: %d %v", status, out)
	}
	// The worker holds nothing of the service's environment.
	workers := childrenOf(t, p.cmd.Process.Pid)
	if len(workers) != 1 {
		t.Fatalf("policy workers %v, want one", workers)
	}
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(workers[0]) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(environ), master) || strings.Contains(string(environ), "AGENTSIGNA_DATA_DIR") {
		t.Errorf("the worker's environment holds the service's: %q", environ)
	}

	status, out := ec.do("POST", "/v1/decisions", `{"action":{"type":"payment.send","counterparty":"`+ec.creds.Counterparties[0].ID+`","amount":{"value":"1.00","currency":"EUR"}}}`)
	// Whether the stack overflows within the 100 ms deadline depends on
	// the machine: past it, the decision times out and the worker, still
	// at it, ends or is killed a second later.
	reasons, _ := out["reasons"].([]any)
	if status != 200 || out["outcome"] != "deny" || (!slices.Equal(reasons, []any{"policy_error"}) && !slices.Equal(reasons, []any{"policy_timeout"})) {
		t.Fatalf("the payment that ends the worker: %d %v", status, out)
	}
	oc := newAgentClient(t, p, other, env)
	if status, out := oc.do("POST", "/v1/decisions", `{"action":{"type":"report.generate"}}`); status != 200 || out["outcome"] != "allow" {
		t.Fatalf("another organization after the crash: %d %v", status, out)
	}
	// (Why it ended depends on the build: a stack overflow, or under the
	// race detector its own allocations failing first.)
	waitLogs := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Logs(), `"msg":"policy worker exited","revision":"crash-1"`) {
		if time.Now().After(waitLogs) {
			t.Fatal("no log line for the worker's end")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// evil decides again once its worker is back (after a pause).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, out := ec.do("POST", "/v1/decisions", `{"action":{"type":"report.generate"}}`); out["outcome"] == "allow" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("evil's plain actions are still denied")
		}
		time.Sleep(250 * time.Millisecond)
	}
	workers = childrenOf(t, p.cmd.Process.Pid)
	if len(workers) != 2 {
		t.Fatalf("policy workers %v, want two (evil's, restarted, and other's)", workers)
	}
	p.stop(t)
	for _, pid := range workers {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("worker %d outlives the service", pid)
		}
	}
}
