//go:build unix

package osfile

import (
	"io/fs"
	"os"
	"syscall"
)

// OwnedByOther reports whether fi, from Stat or Lstat, is owned by another
// user than this process's effective one, and by whom. Another user who
// owns a file the service trusts (a master key, a database, a WAL) chose
// what is in it, and may read it, whatever its mode says now.
func OwnedByOther(fi fs.FileInfo) (uid int, other bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), int(st.Uid) != os.Geteuid()
}
