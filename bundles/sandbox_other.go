//go:build !linux

package bundles

// Off Linux a worker is not sandboxed.

func canSandbox() bool { return false }

func inSandbox() bool { return false }

func enterSandbox() error { return nil }

func sealSandbox() error { return nil }

func sandboxSupport() (desc string, whole bool) {
	return "policy workers are not sandboxed off Linux", false
}
