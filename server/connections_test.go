package server_test

import (
	"testing"

	"github.com/agentsigna/agentsigna/server"
)

// Both planes full leave a quarter of the descriptors, and at least 1,024,
// to the rest of the service.
func TestConnectionsWithin(t *testing.T) {
	for _, tc := range []struct {
		nofile uint64
		want   int
	}{
		{0, server.MinMaxConnections},
		{1024, server.MinMaxConnections},
		{1024 + 2*server.MinMaxConnections, server.MinMaxConnections},
		{1024 + 2*server.MinMaxConnections + 2, server.MinMaxConnections + 1},
		{4096, 1536},    // 4096 - 1024 reserved
		{8728, 3273},    // 8728 - 2182 reserved
		{8736, 3276},    // the default, reached
		{20000, 3276},   // never more
		{1 << 20, 3276}, // never more
		{^uint64(0), server.DefaultMaxConnections},
	} {
		got := server.ConnectionsWithin(tc.nofile)
		if got != tc.want {
			t.Errorf("ConnectionsWithin(%d) = %d, want %d", tc.nofile, got, tc.want)
		}
		if tc.nofile > 2048 && uint64(2*got) > tc.nofile-max(1024, tc.nofile/4) {
			t.Errorf("ConnectionsWithin(%d) = %d leaves less than the reserve", tc.nofile, got)
		}
	}
}
