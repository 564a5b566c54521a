package server

import (
	"bytes"
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
	ln := newLimitListener(inner, 1, slog.New(slog.DiscardHandler))
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

// lockedBuffer is a log sink for the listener and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
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
	var logs lockedBuffer
	fl := &flakyListener{Listener: inner}
	ln := newLimitListener(fl, 2, slog.New(slog.NewTextHandler(&logs, nil)))
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
