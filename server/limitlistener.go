package server

import (
	"net"
	"sync"
)

// limitListener accepts at most cap(slots) connections at once: past that,
// Accept waits until one of them closes, as
// golang.org/x/net/netutil.LimitListener does. It is our own so that a
// connection still unwraps to its socket (NetConn), which peerGone needs to
// see a long poll's client leave; x/net's wrapper hides it.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), closed: make(chan struct{})}
}

// Accept takes a slot, then a connection; a listener closed while waiting
// for a slot returns the error the closed listener gives.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		c, err := l.Listener.Accept()
		if err == nil { // not closed after all: not ours to serve
			c.Close()
			err = net.ErrClosed
		}
		return nil, err
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitConn gives its slot back when it first closes.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// NetConn is the connection accepted, as *tls.Conn's NetConn.
func (c *limitConn) NetConn() net.Conn { return c.Conn }
