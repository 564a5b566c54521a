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
	// Said as a person would, not as the database does.
	if _, err := run("create", "--slug", "acme", "--name", "Again"); err == nil || err.Error() != `an organization "acme" exists already (org list)` {
		t.Fatalf("duplicate slug: %v", err)
	}
	if _, err := run("create", "--slug", "Bad Slug", "--name", "x"); err == nil {
		t.Fatal("bad slug accepted")
	}
	// Its first receipt key retires none, and says so.
	var keysOut, keysErr bytes.Buffer
	if err := runKeys(ctx, []string{"rotate", "--tenant", "acme", "--data-dir", dir}, &keysOut, &keysErr, envOf(nil)); err != nil ||
		!strings.HasPrefix(keysOut.String(), "acme: first receipt key ") || strings.Contains(keysOut.String(), "retired") {
		t.Fatalf("keys rotate: %q %q, %v", keysOut.String(), keysErr.String(), err)
	}
	if out, err := run("list"); err != nil || !strings.Contains(out, "acme\t") || !strings.Contains(out, `"Acme Corp"`) {
		t.Fatalf("list: %q, %v", out, err)
	}
	// The creation is in the platform ledger, the key's in acme's, and both
	// logs verify.
	var out2, errOut bytes.Buffer
	if err := runLedger(ctx, []string{"verify", "--data-dir", dir}, &out2, &errOut, envOf(nil)); err != nil ||
		!strings.Contains(out2.String(), "platform: OK: 1 entries") || !strings.Contains(out2.String(), "acme: OK: 1 entries") { // its receipt_key.created
		t.Fatalf("ledger verify: %q %v", out2.String(), err)
	}
}
