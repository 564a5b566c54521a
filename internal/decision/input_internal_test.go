package decision

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The input built directly is the value of its JSON document, whichever
// members are present.
func TestInputValueIsDocument(t *testing.T) {
	for name, mutate := range map[string]func(*Input){
		"full": func(*Input) {},
		"no counterparty, amount, resource or params": func(in *Input) {
			in.Counterparty, in.Action.Amount, in.Action.Resource, in.Action.Counterparty, in.Action.Params = nil, nil, "", "", nil
		},
		"empty params": func(in *Input) { in.Action.Params = map[string]any{} },
		"nested params with numbers": func(in *Input) {
			in.Action.Params = map[string]any{
				"n": json.Number("1.50"), "big": json.Number("9007199254740991"), "neg": json.Number("-3"),
				"list": []any{json.Number("1"), "two", true, nil, map[string]any{"deep": []any{}}},
				"type": "a member named like the input's",
			}
		},
		"large counts, zero times, another zone": func(in *Input) {
			in.Agent.Stats = AgentStats{Decisions1h: 1 << 20, Denials1h: 512, Decisions24h: 1 << 30}
			in.Counterparty.PaymentsCount = 100000
			in.Agent.CreatedAt = time.Time{}
			in.Time = time.Date(2026, 11, 27, 9, 0, 0, 123, time.FixedZone("x", -7200))
		},
		"words outside the enumerations": func(in *Input) {
			in.Agent.RiskTier, in.Agent.Status, in.Counterparty.Status, in.Action.Amount.Currency = "", "Active", "weird", "XTS"
			in.Reason, in.Agent.Name = "", "名前 <&>"
		},
	} {
		in := defaultInput()
		in.Action.Params = map[string]any{"po": "PO-77"}
		mutate(&in)
		want, err := ast.InterfaceToValue(in.Document())
		if err != nil {
			t.Fatal(err)
		}
		got, err := in.value()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Compare(want) != 0 {
			t.Errorf("%s:\n got %v\nwant %v", name, got, want)
		}
	}
	in := defaultInput()
	in.Action.Params = map[string]any{"f": func() {}}
	if _, err := in.value(); err == nil {
		t.Error("params that are not JSON were converted")
	}
}

// BenchmarkInputValue compares the input built directly with its document
// converted.
func BenchmarkInputValue(b *testing.B) {
	in := defaultInput()
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := in.value(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("document", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ast.InterfaceToValue(in.Document()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
