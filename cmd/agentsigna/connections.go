package main

import (
	"log/slog"

	"github.com/agentsigna/agentsigna/server"
)

// connectionCap is the connections each plane may hold open at once:
// --max-connections when given (serve refused a negative one already),
// else as many as the descriptor limit leaves room for
// (server.ConnectionsWithin). nofile reads that limit. Each choice the
// limit bends, or a given cap that could exhaust it, is logged.
func connectionCap(given int, nofile func() (uint64, bool), log *slog.Logger) int {
	limit, known := nofile()
	if given > 0 {
		if known && uint64(given) > uint64(server.ConnectionsWithin(limit)) {
			log.Warn("--max-connections leaves the service little room in its descriptor limit: a flood of connections could make it fail requests",
				slog.Int("max_connections", given), slog.Uint64("descriptor_limit", limit),
				slog.Int("sized_to_limit", server.ConnectionsWithin(limit)))
		}
		return given
	}
	if !known {
		return server.DefaultMaxConnections
	}
	n := server.ConnectionsWithin(limit)
	switch {
	case n == server.MinMaxConnections:
		log.Warn("the descriptor limit is too low for a service: each plane holds at most the minimum of connections; raise RLIMIT_NOFILE",
			slog.Uint64("descriptor_limit", limit), slog.Int("max_connections", n))
	case n < server.DefaultMaxConnections:
		log.Info("connections per plane sized to the descriptor limit",
			slog.Uint64("descriptor_limit", limit), slog.Int("max_connections", n))
	}
	return n
}
