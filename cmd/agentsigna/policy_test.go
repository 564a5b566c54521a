package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"unicode"

	"github.com/agentsigna/agentsigna/bundles"
)

// policyExampleDir is the example organization repository.
const policyExampleDir = "../../policies/examples/acme"

func runPolicyCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runPolicy(context.Background(), args, &out, &errOut, envOf(nil))
	return out.String(), errOut.String(), err
}

func writePolicyTestFile(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// bundleFile packs files (path → content) into a bundle file.
func policyBundleFile(t *testing.T, files map[string]string) string {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, content := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(content)}
	}
	raw, err := bundles.PackFS(fsys, bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return writePolicyTestFile(t, t.TempDir(), "bundle.tar.gz", raw)
}

func TestPolicyCheckDirectory(t *testing.T) {
	out, _, err := runPolicyCmd(t, "check", policyExampleDir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "ok: "+policyExampleDir+": revision acme-example-1,") || !strings.Contains(out, "unsigned") {
		t.Errorf("output %q", out)
	}
}

func TestPolicyCheckRejections(t *testing.T) {
	manifest := `{"revision":"r1","roots":["tenant"]}`
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  error
		say   string
	}{
		{"http.send", map[string]string{".manifest": manifest, "tenant/p.rego": "package tenant\n\ndecision := http.send({\"method\": \"GET\", \"url\": \"https://x\"}).body\n"},
			bundles.ErrForbiddenBuiltin, "tenant/p.rego:3: http.send makes HTTP requests"},
		{"forbidden root", map[string]string{".manifest": `{"revision":"r1","roots":["tenant","agentsigna"]}`, "tenant/p.rego": "package tenant\n\ndecision := {}\n"},
			bundles.ErrForbiddenRoot, `root "agentsigna"`},
		{"no revision", map[string]string{".manifest": `{"roots":["tenant"]}`, "tenant/p.rego": "package tenant\n\ndecision := {}\n"},
			bundles.ErrManifest, "no revision"},
		{"syntax error", map[string]string{".manifest": manifest, "tenant/p.rego": "package tenant\n\ndecision := {\n"},
			bundles.ErrParse, "tenant/p.rego"},
		// The error quotes the source line: its terminal escapes and bidi
		// overrides are shown escaped, not played on the operator's terminal.
		{"escapes in the source", map[string]string{".manifest": manifest,
			"tenant/p.rego": "package tenant\ndecision := {\"allow\": true} \x1b[31mRED\x1b[0m \u202eok\u009b oops\n"},
			bundles.ErrParse, `\u001b[31mRED\u001b[0m \u202eok\u009b oops`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := policyBundleFile(t, tc.files)
			_, _, err := runPolicyCmd(t, "check", path)
			if !errors.Is(err, tc.want) || errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			// What main prints: one line naming the bundle and the reason.
			msg := oneLine(err)
			if !strings.HasPrefix(msg, path+": ") || !strings.Contains(msg, tc.say) || strings.ContainsFunc(msg, unicode.IsControl) {
				t.Errorf("message %q", msg)
			}
		})
	}
}

// check and simulate compile as the server does, in a worker bounded in
// time: a bundle that takes longer than the bound is refused, as an upload
// of it would be, rather than passed (or left to hang the command).
func TestPolicyCompileBound(t *testing.T) {
	var many strings.Builder
	many.WriteString("package tenant\n\ndecision := {\"allow\": true}\n")
	for i := range 3000 {
		fmt.Fprintf(&many, "r%d := %d\n", i, i)
	}
	path := policyBundleFile(t, map[string]string{".manifest": `{"revision":"r1","roots":["tenant"]}`, "tenant/p.rego": many.String()})
	if _, _, err := runPolicyCmd(t, "check", path); err != nil {
		t.Fatalf("within the default bound: %v", err)
	}
	input := writePolicyTestFile(t, t.TempDir(), "input.json", []byte(`{"action":{"type":"report.archive"}}`))
	for _, args := range [][]string{{"check", path}, {"simulate", "--bundle", path, "--input", input}} {
		_, _, err := runPolicyCmd(t, append(args, "--compile-timeout", "1ns")...)
		if !errors.Is(err, bundles.ErrCompile) || !strings.Contains(err.Error(), "compiling took longer than 1ns") || errors.Is(err, errUsage) {
			t.Errorf("%s past the bound: %v", args[0], err)
		}
	}
}

func TestPolicyCheckUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"check"},
		{"check", "a", "b"},
		{"check", "--no-such-flag", policyExampleDir},
		{"simulate", "--bundle", policyExampleDir},
	} {
		if _, _, err := runPolicyCmd(t, args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
		}
	}
	if _, stderr, err := runPolicyCmd(t, "--help"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "policy check BUNDLE|DIR") {
		t.Errorf("help: %v %q", err, stderr)
	}
	if _, _, err := runPolicyCmd(t, "check", filepath.Join(t.TempDir(), "missing.tar.gz")); err == nil || errors.Is(err, errUsage) {
		t.Errorf("missing file: %v", err)
	}
}

func TestPolicyCheckVerificationKeys(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pub := writePolicyTestFile(t, dir, "pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	privDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	privFile := writePolicyTestFile(t, dir, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))

	// An unsigned directory is refused once a key is given.
	if _, _, err := runPolicyCmd(t, "check", policyExampleDir, "--verification-key", pub); !errors.Is(err, bundles.ErrUnsigned) {
		t.Errorf("unsigned with a key: %v", err)
	}
	if _, _, err := runPolicyCmd(t, "check", "--verification-key", privFile, policyExampleDir); !errors.Is(err, bundles.ErrVerificationKey) || !strings.Contains(err.Error(), "private key") {
		t.Errorf("private key: %v", err)
	}
	if _, _, err := runPolicyCmd(t, "check", policyExampleDir, "--verification-key", pub, "--signing-alg", "HS256"); !errors.Is(err, bundles.ErrVerificationKey) || !strings.Contains(err.Error(), "HMAC") {
		t.Errorf("HMAC: %v", err)
	}
	// The environment sets the flag too.
	var out, errOut bytes.Buffer
	err = runPolicy(context.Background(), []string{"check", policyExampleDir}, &out, &errOut, envOf(map[string]string{"AGENTSIGNA_VERIFICATION_KEY": pub}))
	if !errors.Is(err, bundles.ErrUnsigned) {
		t.Errorf("key from the environment: %v", err)
	}

	// A bundle signed by the real opa CLI passes, with the flag after the
	// bundle as a security team's CI would write it.
	if testing.Short() {
		t.Skip("builds a bundle with the opa CLI")
	}
	bin, err := exec.Command("go", "tool", "-n", "opa").Output()
	if err != nil {
		t.Fatalf("go tool -n opa: %v", err)
	}
	signed := filepath.Join(dir, "bundle.tar.gz")
	cmd := exec.Command(strings.TrimSpace(string(bin)), "build", "-b", ".", "--ignore", "*_test.rego",
		"--revision", "ci-1234", "--signing-key", privFile, "-o", signed)
	cmd.Dir = policyExampleDir
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa build: %v\n%s", err, o)
	}
	stdout, _, err := runPolicyCmd(t, "check", signed, "--verification-key", pub)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "revision ci-1234") || !strings.Contains(stdout, `signature verified with key "default"`) {
		t.Errorf("output %q", stdout)
	}
	if _, _, err := runPolicyCmd(t, "check", signed); !errors.Is(err, bundles.ErrSignedWithoutKey) {
		t.Errorf("signed, no key: %v", err)
	}
}

func TestPolicySimulate(t *testing.T) {
	input := `{
  "action": {"type": "payment.send", "resource": "invoice:INV-2291", "counterparty": "cp_1",
             "amount": {"value": "1250.00", "currency": "EUR"}, "params": {"po": "PO-77"}},
  "reason": "Pay approved invoice INV-2291",
  "agent": {"id": "agt_1", "name": "ap-bot", "sponsor": "usr_1", "risk_tier": "low", "status": "active",
            "created_at": "2025-01-01T00:00:00Z", "stats": {"decisions_1h": 1, "denials_1h": 0, "decisions_24h": 3}},
  "counterparty": {"id": "cp_1", "status": "verified", "created_at": "2024-06-01T00:00:00Z", "payments_count": 7},
  "tenant": {"id": "t_1", "slug": "acme"},
  "time": "2025-03-01T10:00:00Z"
}`
	inputFile := writePolicyTestFile(t, t.TempDir(), "action.json", []byte(input))
	out, _, err := runPolicyCmd(t, "simulate", "--bundle", policyExampleDir, "--input", inputFile)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Outcome           string   `json:"outcome"`
		Reasons           []string `json:"reasons"`
		ApprovalsRequired int      `json:"approvals_required"`
		Policy            struct {
			BaseRevision   string `json:"base_revision"`
			TenantRevision string `json:"tenant_revision"`
		} `json:"policy"`
		Tenant struct {
			Escalate []string `json:"escalate"`
		} `json:"tenant"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if got.Outcome != "escalate" || strings.Join(got.Reasons, ",") != "amount_above_limit" || got.ApprovalsRequired != 1 ||
		got.Policy.TenantRevision != "acme-example-1" || len(got.Policy.BaseRevision) != 64 {
		t.Errorf("decision:\n%s", out)
	}

	// Base only.
	out, _, err = runPolicyCmd(t, "simulate", "--input", inputFile)
	if err != nil || !strings.Contains(out, `"no_authority"`) {
		t.Errorf("base only: %v\n%s", err, out)
	}

	// A misspelt field is an error, not a silently missing counterparty.
	bad := writePolicyTestFile(t, t.TempDir(), "bad.json", []byte(strings.Replace(input, `"counterparty": {"id"`, `"counterpartty": {"id"`, 1)))
	if _, _, err := runPolicyCmd(t, "simulate", "--bundle", policyExampleDir, "--input", bad); err == nil || !strings.Contains(err.Error(), "counterpartty") {
		t.Errorf("unknown field: %v", err)
	}

	// Evaluation errors are shown to the policy author.
	broken := policyBundleFile(t, map[string]string{".manifest": `{"revision":"r1","roots":["tenant"]}`, "tenant/p.rego": "package tenant\n\ndecision := {\"allow\": \"yes\"}\n"})
	out, _, err = runPolicyCmd(t, "simulate", "--bundle", broken, "--input", inputFile)
	if err != nil || !strings.Contains(out, `"policy_error"`) || !strings.Contains(out, `"errors"`) || !strings.Contains(out, "allow is a string") {
		t.Errorf("broken policy: %v\n%s", err, out)
	}
}
