package main

import (
	"flag"
	"io"
	"testing"

	"golang.org/x/time/rate"

	"github.com/agentsigna/agentsigna/server"
)

// The flags' rates are a second and a minute; 0 is no bound; the
// defaults are the server's.
func TestAgentBoundFlagsParse(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want agentBounds
	}{
		{nil, agentBounds{server.DefaultAgentDecisionRate, server.DefaultAgentDecisionBurst, server.DefaultAgentTokenRate, server.DefaultAgentTokenBurst,
			server.DefaultAgentReadRate, server.DefaultAgentReadBurst}},
		{[]string{"--agent-decisions-per-second", "0.5", "--agent-decision-burst", "7", "--agent-tokens-per-minute", "30", "--agent-token-burst", "3",
			"--agent-reads-per-second", "4", "--agent-read-burst", "9"},
			agentBounds{0.5, 7, 0.5, 3, 4, 9}},
		{[]string{"--agent-decisions-per-second", "0", "--agent-tokens-per-minute", "0", "--agent-reads-per-second", "0"},
			agentBounds{rate.Inf, server.DefaultAgentDecisionBurst, rate.Inf, server.DefaultAgentTokenBurst, rate.Inf, server.DefaultAgentReadBurst}},
		{[]string{"--agent-decisions-per-second", "-0"}, agentBounds{rate.Inf, server.DefaultAgentDecisionBurst, server.DefaultAgentTokenRate, server.DefaultAgentTokenBurst,
			server.DefaultAgentReadRate, server.DefaultAgentReadBurst}},
	} {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var f agentBoundFlags
		f.register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		got, err := f.parse()
		if err != nil || got != tc.want {
			t.Errorf("%v: %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
}
