package bundles

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_X86_64

// legacyRefusedCalls are refusedCalls' older forms, which amd64 keeps.
var legacyRefusedCalls = []uint32{
	unix.SYS_CHMOD, unix.SYS_CHOWN, unix.SYS_LCHOWN,
	unix.SYS_UTIME, unix.SYS_UTIMES, unix.SYS_FUTIMESAT,
	unix.SYS_FORK, unix.SYS_VFORK, unix.SYS_INOTIFY_INIT,
	unix.SYS_MODIFY_LDT,
}
