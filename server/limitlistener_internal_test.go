package server

import (
	"errors"
	"net"
	"testing"
	"time"
)

// The limit listener's own paths: a connection past the limit waits until
// one closes (twice closing gives one slot back), a close while Accept
// waits for a slot ends it, and a connection unwraps to the one accepted.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLimitListener(inner, 1)
	dial := func() {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	type accepted struct {
		c   net.Conn
		err error
	}
	accept := func() chan accepted {
		ch := make(chan accepted, 1)
		go func() {
			c, err := ln.Accept()
			ch <- accepted{c, err}
		}()
		return ch
	}
	dial()
	dial()
	dial()
	first := <-accept()
	if first.err != nil {
		t.Fatal(first.err)
	}
	if u, ok := first.c.(interface{ NetConn() net.Conn }); !ok || u.NetConn().LocalAddr().String() != inner.Addr().String() {
		t.Fatalf("the connection does not unwrap to the one accepted: %T", first.c)
	}
	second := accept()
	select {
	case a := <-second:
		t.Fatalf("a second connection accepted past the limit: %v", a.err)
	case <-time.After(200 * time.Millisecond):
	}
	first.c.Close()
	first.c.Close() // gives back one slot, not two
	a := <-second
	if a.err != nil {
		t.Fatal(a.err)
	}
	third := accept()
	select {
	case a := <-third:
		t.Fatalf("a third connection accepted past the limit: %v", a.err)
	case <-time.After(200 * time.Millisecond):
	}
	ln.Close()
	select {
	case a := <-third:
		if a.err == nil || !errors.Is(a.err, net.ErrClosed) {
			t.Fatalf("Accept waiting for a slot, after Close: %v", a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waits after Close")
	}
}
