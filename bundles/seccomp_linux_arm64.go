package bundles

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_AARCH64

// legacyRefusedCalls: arm64 has only the *at forms of refusedCalls.
var legacyRefusedCalls []uint32
