package bundles

import (
	"fmt"
	"os"
	"testing"
)

// TestMain lets this test binary be a policy worker (Workers starts this
// executable, as the service starts its own).
func TestMain(m *testing.M) {
	if IsWorker() {
		if err := ServeWorker(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
