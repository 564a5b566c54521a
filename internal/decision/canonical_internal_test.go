package decision

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/signing"
)

// The shortcuts that reuse the canonical action give exactly what
// canonicalizing the whole again gives.
func TestCanonicalShortcuts(t *testing.T) {
	for _, body := range []string{
		`{"action":{"type":"payment.send"}}`,
		`{"action":{"type":"payment.send","resource":"invoice:INV-1","counterparty":"cp_aaaaaaaaaaaaaaaaaaaaaaaaaa","amount":{"value":"1250.00","currency":"EUR"},"params":{"z":1,"a":[1.50,"\u00e9",{"y":null,"b":true}],"po":"PO-77"}},"reason":"pay it"}`,
		`{"action":{"type":"grant.access","params":{"e":1e3,"unicode":"\ud83d\ude00 <&> \u2028 control \t\n\u000d"}},"reason":"quote \" backslash \\ tab \t line\r\n \u00e9"}`,
		`{"action":{"type":"vendor.update_bank"},"reason":""}`,
		`{"action":{"type":"payment.send","amount":{"currency":"JPY","value":"0"},"params":{}}}`,
		`{"action":{"type":"payment.send","resource":"a\tb\r\n \"q\" \\ <&> \u2028 é","counterparty":"cp_aaaaaaaaaaaaaaaaaaaaaaaaaa"}}`,
		`{"action":{"type":"grant.access","params":{"b":{"z":[1e-7,-0,1.5e300,0.1]},"a":"\u00e9\ud83d\ude00"}}}`,
	} {
		var r DecisionRequest
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		v, err := r.validate()
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		action, err := canonicalJSON(r.Action)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(v.action, action) {
			t.Errorf("canonical action\n got %s\nwant %s", v.action, action)
		}
		whole, err := canonicalJSON(r)
		if err != nil {
			t.Fatal(err)
		}
		spliced, err := canonicalRequest(v.action, r.Reason)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(whole, spliced) {
			t.Errorf("canonical request\n got %s\nwant %s", spliced, whole)
		}
		digest, err := signing.ActionDigest(v.action)
		if err != nil {
			t.Fatal(err)
		}
		if got := signing.CanonicalActionDigest(v.action); got != digest {
			t.Errorf("action digest %s, ActionDigest says %s", got, digest)
		}
	}
}

// The decision record written directly is exactly what canonicalizing its
// JSON gives, for every member and the strings RFC 8785 escapes; a member
// added to the struct but not to canonical fails here.
func TestDecisionRecordCanonical(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 30, 15, 123456789, time.UTC)
	full := decisionRecord{
		DecisionID: "dec_aaaaaaaaaaaaaaaaaaaaaaaaaa", AgentID: "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb",
		Action:       json.RawMessage(`{"amount":{"currency":"EUR","value":"1250.00"},"params":{"a":[1.5,"é"],"z":1},"type":"payment.send"}`),
		ActionSHA256: "Yg3o0YjsQbG-ZGWLrW5BFlm2m9wEKQ1zJtdF1YpfBxA",
		Reason:       "quote \" backslash \\ tab \t line\r\n <&> \u2028 \u007f \u0001 é 😀",
		Outcome:      Escalate, Reasons: []string{"amount_over_limit", "new_counterparty <&>"}, ApprovalsRequired: 2,
		Policy: PolicyRevisions{BaseRevision: "base-1", TenantRevision: "acme-7", TenantBundleSHA256: "q+/Zm9vYmFyYmF6cXV4eHl6enk/dGVzdGluZw=="},
		Time:   at,
	}
	for name, r := range map[string]decisionRecord{
		"every member": full,
		"no tenant policy": func() decisionRecord {
			r := full
			r.Policy = PolicyRevisions{BaseRevision: "base-1"}
			return r
		}(),
		"allow, nothing optional": func() decisionRecord {
			r := full
			r.Action, r.Reason, r.Outcome, r.Reasons, r.ApprovalsRequired = json.RawMessage(`{"type":"payment.send"}`), "", Allow, []string{}, 0
			return r
		}(),
		"nil reasons": func() decisionRecord {
			r := full
			r.Reasons = nil
			return r
		}(),
		"time in another zone": func() decisionRecord {
			r := full
			r.Time = at.In(time.FixedZone("x", 3600)).Truncate(time.Second)
			return r
		}(),
	} {
		want, err := canonicalJSON(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.canonical()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	bad := full
	bad.Reason = "not UTF-8 \xff"
	if _, err := bad.canonical(); err == nil {
		t.Error("a record holding invalid UTF-8 was written")
	}
}

// BenchmarkDecisionRecord compares the record written directly with the
// record marshalled and canonicalized.
func BenchmarkDecisionRecord(b *testing.B) {
	r := decisionRecord{
		DecisionID: "dec_aaaaaaaaaaaaaaaaaaaaaaaaaa", AgentID: "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb",
		Action:       json.RawMessage(`{"amount":{"currency":"EUR","value":"1250.00"},"counterparty":"cp_cccccccccccccccccccccccccc","resource":"invoice:INV-1","type":"payment.send"}`),
		ActionSHA256: "Yg3o0YjsQbG-ZGWLrW5BFlm2m9wEKQ1zJtdF1YpfBxA", Reason: "pay invoice INV-1",
		Outcome: Allow, Reasons: []string{}, Policy: PolicyRevisions{BaseRevision: "base-1", TenantRevision: "acme-7", TenantBundleSHA256: "q+/Zm9vYmFyYmF6cXV4eHl6enk/dGVzdGluZw=="},
		Time: time.Now().UTC(),
	}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.canonical(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshal+canonicalize", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := canonicalJSON(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCanonicalAction compares the action written directly with the
// action marshalled and canonicalized.
func BenchmarkCanonicalAction(b *testing.B) {
	a := RequestAction{
		Type: "payment.send", Resource: "invoice:INV-1", Counterparty: "cp_cccccccccccccccccccccccccc",
		Amount: &Amount{Value: "1250.00", Currency: "EUR"}, Params: json.RawMessage(`{"po":"PO-77"}`),
	}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := canonicalAction(&a); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshal+canonicalize", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := canonicalJSON(a); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// canonicalObject's own edges, which the records do not reach: empty
// objects, a nil list, and a string that is not UTF-8.
func TestCanonicalObjectEdges(t *testing.T) {
	o := newCanonicalObject(0)
	if b, err := o.end(); err != nil || string(b) != `{}` {
		t.Errorf("empty object: %s, %v", b, err)
	}
	o = newCanonicalObject(0)
	o.open("a")
	o.close()
	o.strings("b", nil)
	o.strings("c", []string{})
	o.int("d", -7)
	if b, err := o.end(); err != nil || string(b) != `{"a":{},"b":null,"c":[],"d":-7}` {
		t.Errorf("edges: %s, %v", b, err)
	}
	o = newCanonicalObject(0)
	o.strings("a", []string{"ok", "\xff"})
	o.string("b", "fine")
	if b, err := o.end(); err == nil {
		t.Errorf("invalid UTF-8 written: %s", b)
	}
}
