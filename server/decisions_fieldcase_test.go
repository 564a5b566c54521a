package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDecisionMemberNamesAreExact: a member name of the decision request is
// its field's name byte for byte. encoding/json alone would match "TYPE",
// "Type" and "rea\u017fon" (U+017F folds to s) to type and reason, so a
// reader of the body that compares names exactly would see no action.type
// while the receipt signed one.
func TestDecisionMemberNamesAreExact(t *testing.T) {
	e := newAgentEnv(t)
	tok := e.token(t, "acme")
	post := func(body string) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/v1/decisions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		return req
	}
	for _, tc := range []struct{ body, path string }{
		{`{"ACTION":{"TYPE":"report.generate"}}`, "$.ACTION"},
		{`{"action":{"Type":"report.generate"}}`, "$.action.Type"},
		{`{"action":{"type":"report.generate"},"rea\u017fon":"x"}`, `$["rea\u017fon"]`},
		{`{"action":{"type":"report.generate","reſource":"x"}}`, `$.action["re\u017fource"]`},
	} {
		resp, body := do(t, e.app, post(tc.body))
		p := assertProblem(t, resp, body, 400, "bad-request")
		if want := "unknown field at " + tc.path; !strings.Contains(p.Detail, want) {
			t.Errorf("%s: detail %q does not name %s", tc.body, p.Detail, want)
		}
	}
	resp, body := do(t, e.app, post(`{"action":{"type":"report.generate","resource":"x"},"reason":"x"}`))
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"outcome":"allow"`) {
		t.Fatalf("exact names: %d %s", resp.StatusCode, body)
	}
}
