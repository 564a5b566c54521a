package decision_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/agentsigna/agentsigna/bundles"
)

// TestMain lets this test binary be a policy worker (bundles.Workers
// starts this executable, as the service starts its own).
func TestMain(m *testing.M) {
	if bundles.IsWorker() {
		if err := bundles.ServeWorker(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
