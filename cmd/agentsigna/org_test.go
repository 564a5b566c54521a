package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestOrgCreateAndList(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runOrg(ctx, append(args, "--data-dir", dir), &out, &errOut, envOf(nil))
		return out.String(), err
	}
	out, err := run("create", "--slug", "acme", "--name", "Acme Corp")
	if err != nil || !strings.Contains(out, "created acme") || !strings.Contains(out, "127.0.0.1:8080/t/acme+") {
		t.Fatalf("create: %q, %v", out, err)
	}
	if _, err := run("create", "--slug", "acme", "--name", "Again"); err == nil {
		t.Fatal("duplicate slug accepted")
	}
	if _, err := run("create", "--slug", "Bad Slug", "--name", "x"); err == nil {
		t.Fatal("bad slug accepted")
	}
	if out, err := run("list"); err != nil || !strings.Contains(out, "acme\t") || !strings.Contains(out, `"Acme Corp"`) {
		t.Fatalf("list: %q, %v", out, err)
	}
	// The creation is in the platform ledger, and both logs verify.
	var out2, errOut bytes.Buffer
	if err := runLedger(ctx, []string{"verify", "--data-dir", dir}, &out2, &errOut, envOf(nil)); err != nil ||
		!strings.Contains(out2.String(), "platform: OK: 1 entries") || !strings.Contains(out2.String(), "acme: OK: 0 entries") {
		t.Fatalf("ledger verify: %q %v", out2.String(), err)
	}
}
