//go:build unix

package osfile

import (
	"os"
	"syscall"
)

// openNonBlocking opens path read-only with O_NONBLOCK, so that a FIFO
// without a writer opens at once (to be refused) rather than blocking the
// open. Reads of a regular file never wait, so the flag changes nothing
// for the files OpenRegular keeps.
func openNonBlocking(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
