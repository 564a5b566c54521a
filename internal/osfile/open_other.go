//go:build !unix

package osfile

import "os"

func openNonBlocking(path string) (*os.File, error) { return os.Open(path) }
