package decision_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/agentsigna/agentsigna/bundles"
)

// TestMain lets this test binary be a policy worker (bundles.Workers
// starts this executable, as the service starts its own); a worker
// returns without running the tests.
func TestMain(m *testing.M) {
	if !bundles.IsWorker() {
		m.Run()
		return
	}
	if err := bundles.ServeWorker(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
