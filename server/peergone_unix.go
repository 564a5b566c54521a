//go:build unix

package server

import (
	"errors"
	"net"
	"syscall"
)

// peerGone tells whether the client at the other end of conn has closed
// the connection or reset it, without consuming anything: a non-blocking
// MSG_PEEK of one byte reads end of file, or an error other than "nothing
// yet". Bytes waiting (a pipelined request, or TLS's close_notify) read
// as still there. A conn that is no socket is never gone. Call it only
// while nothing else reads conn: a handler's conn, while it runs.
func peerGone(conn net.Conn) bool {
	for {
		inner, ok := conn.(interface{ NetConn() net.Conn }) // *tls.Conn
		if !ok {
			break
		}
		conn = inner.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var b [1]byte
	// Control, not Read: Read checks the connection's read deadline first,
	// and fasthttp's (ReadTimeout) stays set while the handler runs, so
	// past it Read would never look. The peek does not block.
	err = raw.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil:
			gone = n == 0
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
		default:
			gone = true // ECONNRESET and the like
		}
	})
	return err == nil && gone
}
