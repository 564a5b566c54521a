package bundles

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
)

// bigBundle is a large organization bundle of about 1 MB uncompressed: 55
// modules of 40 rules each (vendor-group limits, ~600 KB of Rego) and a
// data.json of 3,500 vendors (~400 KB).
func bigBundle(b *testing.B) []byte {
	b.Helper()
	fsys := fstest.MapFS{".manifest": {Data: []byte(`{"revision":"big-1","roots":["tenant"]}`)}}
	var decision strings.Builder
	decision.WriteString("package tenant\n\ndefault decision := {}\n\ndecision := {\"allow\": true} if {\n\tsome m in [")
	for m := range 55 {
		var src strings.Builder
		fmt.Fprintf(&src, "package tenant.rules.m%03d\n\n", m)
		for r := range 40 {
			fmt.Fprintf(&src, "# Vendor group %d, rule %d: payments in its category stay under its limit.\n", m, r)
			fmt.Fprintf(&src, "allow if {\n\tinput.action.type == \"payment.send\"\n\tinput.action.params.category == \"cat-%d-%d\"\n\tvendor := data.tenant.vendors[input.counterparty.id]\n\tvendor.group == %d\n\tto_number(input.action.amount.value) <= vendor.limit\n}\n\n", m, r, m)
		}
		fsys[fmt.Sprintf("tenant/rules/m%03d.rego", m)] = &fstest.MapFile{Data: []byte(src.String())}
		if m > 0 {
			decision.WriteString(", ")
		}
		fmt.Fprintf(&decision, "data.tenant.rules.m%03d.allow", m)
	}
	decision.WriteString("]\n\tm\n}\n")
	fsys["tenant/decision.rego"] = &fstest.MapFile{Data: []byte(decision.String())}
	var data strings.Builder
	data.WriteString(`{"vendors": {`)
	for v := range 3500 {
		if v > 0 {
			data.WriteString(",")
		}
		fmt.Fprintf(&data, "\n  \"cp_%05d\": {\"name\": \"Vendor %s GmbH\", \"group\": %d, \"limit\": %d, \"country\": \"DE\", \"iban_last4\": \"%04d\"}", v, randomText(12+v%9), v%55, 1000+(v*7919)%50000, (v*31)%10000)
	}
	data.WriteString("\n}}\n")
	fsys["tenant/data.json"] = &fstest.MapFile{Data: []byte(data.String())}
	raw, err := PackFS(fsys, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkEvaluateColdActivate1MB is what activating a revision costs a
// replica: read (gunzip, checks, parse), compile, prepare and activate a
// ~1 MB bundle, then serve its first decision.
func BenchmarkEvaluateColdActivate1MB(b *testing.B) {
	raw := bigBundle(b)
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	plain, err := io.Copy(io.Discard, gz)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	in := payment(b)
	e := NewEngine()
	b.ReportAllocs()
	for b.Loop() {
		bundle, err := Read(raw, ReadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		p, err := Compile(ctx, bundle)
		if err != nil {
			b.Fatal(err)
		}
		e.Activate("t_1", p)
		if _, err := e.Active("t_1").Evaluate(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(raw)), "gz-bytes")
	b.ReportMetric(float64(plain), "tar-bytes")
}

// BenchmarkEvaluateBase is the base policy alone: memoized (the same input
// again) and not (a new counterparty each time).
func BenchmarkEvaluateBase(b *testing.B) {
	ctx := context.Background()
	p, err := CompileBase(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("memo-hit", func(b *testing.B) {
		in := payment(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Evaluate(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("evaluated", func(b *testing.B) {
		in := payment(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.evaluate(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWorkerStart is what starting an organization's worker costs, at
// each activation and restart: the process (on Linux it executes itself
// again inside its sandbox), then a one-rule bundle sent and compiled.
func BenchmarkWorkerStart(b *testing.B) {
	ws, err := NewWorkers(WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	raw := tarGz(b, file("/.manifest", okManifest), file("/tenant/p.rego", allowAll))
	for b.Loop() {
		p, _, err := ws.Load(context.Background(), raw, ReadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}
