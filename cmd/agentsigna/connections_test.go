package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/server"
)

// Without --max-connections each plane gets what the descriptor limit
// leaves room for, said in the log when it is less than the default; a
// given cap is kept, with a warning when the limit cannot hold it.
func TestConnectionCap(t *testing.T) {
	limit := func(n uint64) func() (uint64, bool) { return func() (uint64, bool) { return n, true } }
	unknown := func() (uint64, bool) { return 0, false }
	for _, tc := range []struct {
		name   string
		given  int
		nofile func() (uint64, bool)
		want   int
		logs   string // "" for no line
	}{
		{"a high limit", 0, limit(1 << 20), server.DefaultMaxConnections, ""},
		{"no limit", 0, limit(^uint64(0)), server.DefaultMaxConnections, ""},
		{"limit unknown", 0, unknown, server.DefaultMaxConnections, ""},
		{"this machine's 20,000", 0, limit(20000), server.DefaultMaxConnections, ""},
		{"8,000", 0, limit(8000), 3000, `"level":"INFO","msg":"connections per plane sized to the descriptor limit","descriptor_limit":8000,"max_connections":3000`},
		{"4,096", 0, limit(4096), 1536, `"max_connections":1536`},
		{"1,024", 0, limit(1024), server.MinMaxConnections, `"level":"WARN","msg":"the descriptor limit is too low`},
		{"given, within the limit", 500, limit(4096), 500, ""},
		{"given, past the limit", 5000, limit(4096), 5000, `"level":"WARN","msg":"--max-connections leaves the service little room`},
		{"given, limit unknown", 50000, unknown, 50000, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if got := connectionCap(tc.given, tc.nofile, slog.New(slog.NewJSONHandler(&buf, nil))); got != tc.want {
				t.Fatalf("connectionCap = %d; want %d", got, tc.want)
			}
			if tc.logs == "" && buf.Len() != 0 || tc.logs != "" && !strings.Contains(buf.String(), tc.logs) {
				t.Errorf("logged %q, want %q", buf.String(), tc.logs)
			}
		})
	}
}
