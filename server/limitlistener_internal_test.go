package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
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
	ln := newLimitListener(inner, 1, 0, slog.New(slog.DiscardHandler))
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

// flakyListener fails its next Accepts with errs, in order.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *flakyListener) fail(errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, errs...)
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

// acceptFailure is accept(2)'s error as the net package returns it.
func acceptFailure(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// A process out of descriptors, or a system out of buffers or memory,
// fails accept(2) for a while: the listener waits it out, with a growing
// pause, rather than end. fasthttp takes any error it returns but a
// timeout for the listener's end, and `serve` then stops: found by
// review, an outsider's idle connections brought a process with a lower
// descriptor limit than the connection cap to EMFILE, and the service
// down.
func TestLimitListenerWaitsOutExhaustion(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs LockedBuffer
	fl := &flakyListener{Listener: inner}
	ln := newLimitListener(fl, 2, 0, slog.New(slog.NewTextHandler(&logs, nil)))
	defer ln.Close()
	fl.fail(acceptFailure(syscall.EMFILE), acceptFailure(syscall.ENFILE), acceptFailure(syscall.ENOBUFS), acceptFailure(syscall.ENOMEM), acceptFailure(syscall.EPROTO))
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept after five passing failures: %v", err)
	}
	defer c.Close()
	for _, want := range []string{"too many open files", "retry_in=5ms", "retry_in=10ms", "retry_in=20ms", "retry_in=40ms", "retry_in=80ms"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q: %s", want, logs.String())
		}
	}

	// Any other failure ends Accept, and gives its slot back.
	fl.fail(errors.New("listener broken"))
	if _, err := ln.Accept(); err == nil || err.Error() != "listener broken" {
		t.Fatalf("Accept after a lasting failure: %v", err)
	}
	if n := len(ln.slots); n != 1 {
		t.Errorf("%d slots taken with one connection open", n)
	}

	// Close ends a pause at once.
	for range 20 {
		fl.fail(acceptFailure(syscall.EMFILE))
	}
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept closed in a pause: %v, want net.ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not end Accept's pause")
	}
	if n := len(ln.slots); n != 1 {
		t.Errorf("%d slots taken after the closed Accept, want 1", n)
	}
}

// A plane whose accept(2) fails for a while goes on serving once it
// passes: Serve does not return.
func TestPlaneServesThroughExhaustion(t *testing.T) {
	ready := func(context.Context) error { return nil }
	planes, err := New(Config{Logger: slog.New(slog.DiscardHandler), TenantReady: ready, PlatformReady: ready})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: inner}
	for range 5 {
		fl.fail(acceptFailure(syscall.EMFILE))
	}
	served := make(chan error, 1)
	go func() { served <- planes.Tenant.Serve(fl) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = planes.Tenant.Shutdown(ctx)
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + inner.Addr().String() + "/healthz")
	if err != nil {
		select {
		case serr := <-served:
			t.Fatalf("the plane stopped serving: %v (GET: %v)", serr, err)
		default:
		}
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz after the failures: %d", resp.StatusCode)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned: %v", err)
	default:
	}
}

// One address holds at most perAddress connections: one more is closed
// without an answer as soon as it is accepted, and the slot it would have
// taken goes to the next; another address is not held back; a connection
// that closes makes room again. The refusals are logged once a minute.
func TestLimitListenerPerAddress(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs LockedBuffer
	ln := newLimitListener(inner, 10, 2, slog.New(slog.NewTextHandler(&logs, nil)))
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dialFrom := func(local string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedByServer := func(c net.Conn) bool {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}
	var held []net.Conn
	for range 2 {
		dialFrom("127.0.0.1")
		held = append(held, <-accepted)
	}
	for range 3 {
		if c := dialFrom("127.0.0.1"); !closedByServer(c) {
			t.Fatal("a third connection from one address was kept")
		}
	}
	dialFrom("127.0.0.2")
	select {
	case c := <-accepted:
		if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" {
			t.Fatalf("accepted a connection from %s, want 127.0.0.2's", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("another address was held back")
	}
	held[0].Close()
	held[0].Close() // once
	c := dialFrom("127.0.0.1")
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no room made by a closed connection")
	}
	if closedByServer(c) {
		t.Fatal("the connection let in after a close was closed")
	}
	if c := dialFrom("127.0.0.1"); !closedByServer(c) {
		t.Fatal("a close counted twice")
	}
	if n := strings.Count(logs.String(), "its address holds the most connections one address may"); n != 1 {
		t.Errorf("%d log lines about 4 refusals, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "address=127.0.0.1/32") {
		t.Errorf("the log does not name the address:\n%s", logs.String())
	}
}

// An address counts as itself; an IPv6 one as its /64 (with or without a
// zone), an IPv4-mapped one as the IPv4 address; a Unix socket not at all.
func TestAddressPrefix(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::1"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::/64"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, ""},
	} {
		p, ok := addressPrefix(tc.addr)
		if got := p.String(); ok != (tc.want != "") || ok && got != tc.want {
			t.Errorf("addressPrefix(%v) = %s, %v; want %q", tc.addr, got, ok, tc.want)
		}
	}
}
