package secrets_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/secrets"
)

func TestMasterKeyIsRedactedEverywhere(t *testing.T) {
	k, err := secrets.ParseMasterKey(testKeyB64)
	if err != nil {
		t.Fatal(err)
	}
	const r = secrets.Redacted

	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3v", "%-20s", "%+q", "%#x"} {
		for name, arg := range map[string]any{"pointer": k, "value": *k} {
			got := fmt.Sprintf(verb, arg)
			assertNoKeyMaterial(t, got, testKeyB64)
			if !strings.Contains(got, r) {
				t.Errorf("Sprintf(%q, %s) = %q, want %s", verb, name, got, r)
			}
		}
	}
	if got := k.String(); got != r {
		t.Errorf("String() = %q", got)
	}
	if got := k.GoString(); got != r {
		t.Errorf("GoString() = %q", got)
	}
	if got := fmt.Sprint(k); got != r {
		t.Errorf("Sprint = %q", got)
	}
	if got := fmt.Sprintf("%v", k); got != r {
		t.Errorf("%%v = %q", got)
	}
	if got := fmt.Sprintf("%#v", k); got != r {
		t.Errorf("%%#v = %q", got)
	}

	// Inside other values: exported fields get the methods; unexported ones
	// are printed by reflection and must show no more than an address.
	type exported struct{ Key *secrets.MasterKey }
	type unexported struct {
		key  *secrets.MasterKey
		kval secrets.MasterKey
	}
	for _, v := range []any{
		exported{k}, &exported{k}, unexported{k, *k}, &unexported{k, *k},
		[]*secrets.MasterKey{k}, map[string]any{"k": k}, []secrets.MasterKey{*k},
	} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%x"} {
			assertNoKeyMaterial(t, fmt.Sprintf(verb, v), testKeyB64)
		}
	}
	if err := fmt.Errorf("loading %v: %w", k, errors.New("x")); err.Error() != "loading [redacted]: x" {
		t.Errorf("error = %q", err)
	}

	// JSON.
	for _, v := range []any{k, *k, exported{k}, map[string]any{"k": k}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		assertNoKeyMaterial(t, string(b), testKeyB64)
		if !strings.Contains(string(b), `"[redacted]"`) {
			t.Errorf("json = %s", b)
		}
	}
	if b, _ := json.Marshal(k); string(b) != `"[redacted]"` {
		t.Errorf("json = %s", b)
	}
	if b, _ := k.MarshalText(); string(b) != r {
		t.Errorf("MarshalText = %s", b)
	}

	// slog, both handlers, as an attribute, a group member and a message arg.
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		log := slog.New(h)
		log.Info("loaded", slog.Any("key", k), "raw", k, "value", *k,
			slog.Group("g", slog.Any("key", k)), slog.Any("wrapped", exported{k}))
		log.Info(fmt.Sprint(k))
		log.With("key", k).Warn("with")
	}
	out := buf.String()
	assertNoKeyMaterial(t, out, testKeyB64)
	if n := strings.Count(out, r); n != 2*7 {
		t.Errorf("expected [redacted] in every key slot, got %d in:\n%s", n, out)
	}
	if got := k.LogValue(); got.Kind() != slog.KindString || got.String() != r {
		t.Errorf("LogValue = %v", got)
	}
}
