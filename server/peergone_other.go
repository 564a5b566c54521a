//go:build !unix

package server

import "net"

// peerGone cannot tell here: a long poll whose client left runs its
// course.
func peerGone(net.Conn) bool { return false }
