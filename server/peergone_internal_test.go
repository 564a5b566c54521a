//go:build unix

package server

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair is a connected loopback pair: the server's end and the client's.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// eventuallyGone waits (boundedly) for the client's close to arrive.
func eventuallyGone(conn net.Conn) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if peerGone(conn) {
			return true
		}
	}
	return false
}

func TestPeerGone(t *testing.T) {
	t.Run("a client waiting is there", func(t *testing.T) {
		server, _ := tcpPair(t)
		if peerGone(server) {
			t.Fatal("gone")
		}
	})
	t.Run("a client that sent more is there, and what it sent is kept", func(t *testing.T) {
		server, client := tcpPair(t)
		client.Write([]byte("GET /next"))
		time.Sleep(50 * time.Millisecond)
		if peerGone(server) {
			t.Fatal("gone")
		}
		b := make([]byte, 9)
		if _, err := io.ReadFull(server, b); err != nil || string(b) != "GET /next" {
			t.Fatalf("read after the check: %q %v", b, err)
		}
	})
	t.Run("a client that closed is gone", func(t *testing.T) {
		server, client := tcpPair(t)
		client.Close()
		if !eventuallyGone(server) {
			t.Fatal("not gone")
		}
	})
	t.Run("a client that reset is gone", func(t *testing.T) {
		server, client := tcpPair(t)
		client.(*net.TCPConn).SetLinger(0) // close with RST
		client.Close()
		if !eventuallyGone(server) {
			t.Fatal("not gone")
		}
	})
	t.Run("a client that closed after the read deadline passed is gone", func(t *testing.T) {
		// fasthttp's ReadTimeout stays set while a handler runs: a long
		// poll outlives it.
		server, client := tcpPair(t)
		server.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		time.Sleep(30 * time.Millisecond)
		if peerGone(server) {
			t.Fatal("gone before the client left")
		}
		client.Close()
		if !eventuallyGone(server) {
			t.Fatal("not gone")
		}
	})
	t.Run("a wrapped connection is unwrapped", func(t *testing.T) {
		server, client := tcpPair(t)
		client.Close()
		if !eventuallyGone(wrapped{server}) {
			t.Fatal("not gone")
		}
	})
	t.Run("no socket, no answer", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		b.Close()
		if peerGone(a) {
			t.Fatal("gone")
		}
	})
}

// wrapped is a connection inside another, as *tls.Conn holds one.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }
