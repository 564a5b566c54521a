package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout is how long a server has to stop after SIGTERM before it is
// killed.
const stopTimeout = 30 * time.Second

// process is a server the harness started. Its output is kept only as a
// bounded tail, for the error message when it fails: the servers write
// their access logs as they do in production, and that cost is theirs.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{}
	err  error // of Wait, once done is closed
}

// startProcess runs bin with args (and env added to the harness's own).
func startProcess(name, bin string, args, env []string) (*process, error) {
	p := &process{name: name, cmd: exec.Command(bin, args...), out: &tail{max: 16 << 10}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM and waits, killing the process if it lingers.
func (p *process) stop() error {
	select {
	case <-p.done:
		return p.exited()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM", p.name, stopTimeout)
	}
}

// exited describes an early exit, with the end of the process's output.
func (p *process) exited() error {
	return fmt.Errorf("%s exited (%v); its last output:\n%s", p.name, p.err, p.out.String())
}

// waitHealthy polls url until it answers 200, the process exits or the
// timeout passes.
func (p *process) waitHealthy(ctx context.Context, client *http.Client, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return p.exited()
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %s within %s; its last output:\n%s", p.name, url, timeout, p.out.String())
		}
	}
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tail is an io.Writer that keeps (at least) the last max bytes written to
// it. It trims only when it holds twice that, so a busy access log costs
// the harness an amortized copy per byte, not one of the whole tail per line.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf[max(0, len(t.buf)-t.max):]))
}
