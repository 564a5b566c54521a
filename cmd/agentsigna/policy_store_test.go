package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

func TestPolicyPushActivateRollback(t *testing.T) {
	dir := t.TempDir()
	s, err := sqlite.Open(context.Background(), sqlite.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	storetest.CreateTenant(t, s, "acme")
	s.Close()
	// The key serve or org create made with the organization.
	if _, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	example := filepath.Join("..", "..", "policies", "examples", "acme")
	ctx := context.Background()
	env := envOf(nil)
	runCmd := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runPolicy(ctx, append(args, "--data-dir", dir), &out, &errOut, env)
		return out.String(), err
	}
	if out, err := runCmd("push", "--tenant", "acme", "--by", "usr_author", example); err != nil || !strings.Contains(out, "uploaded revision acme-example-1") {
		t.Fatalf("push: %q, %v", out, err)
	}
	// The same bundle again stores nothing, and says so (the ledger
	// count below holds no second upload).
	if out, err := runCmd("push", "--tenant", "acme", "--by", "usr_author", example); err != nil || !strings.Contains(out, "acme: already had revision acme-example-1") {
		t.Fatalf("push again: %q, %v", out, err)
	}
	if _, err := runCmd("activate", "--tenant", "acme", "--revision", "nope-1", "--by", "usr_a", "--approved-by", "usr_b"); err == nil ||
		err.Error() != `acme has no revision "nope-1" (policy push stores one)` {
		t.Fatalf("activate an unknown revision: %v", err)
	}
	if _, err := runCmd("activate", "--tenant", "acme", "--revision", "acme-example-1", "--by", "usr_a", "--approved-by", "usr_a"); err == nil {
		t.Fatal("one person activated alone")
	}
	if out, err := runCmd("activate", "--tenant", "acme", "--revision", "acme-example-1", "--by", "usr_a", "--approved-by", "usr_b"); err != nil || !strings.Contains(out, "activated revision acme-example-1") {
		t.Fatalf("activate: %q, %v", out, err)
	}
	if _, err := runCmd("push", "--tenant", "nobody", "--by", "usr_author", example); err == nil || !strings.Contains(err.Error(), "no organization") {
		t.Fatalf("push to an unknown organization: %v", err)
	}
	if _, err := runCmd("push", "--tenant", "acme", example); !errors.Is(err, errUsage) {
		t.Fatalf("push without --by: %v", err)
	}
	var out, errOut bytes.Buffer
	if err := runLedger(ctx, []string{"verify", "--tenant", "acme", "--data-dir", dir}, &out, &errOut, env); err != nil || !strings.Contains(out.String(), "acme: OK: 2 entries") {
		t.Fatalf("ledger verify: %q %q, %v", out.String(), errOut.String(), err)
	}
}
