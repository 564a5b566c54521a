package server

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// limitListener accepts at most cap(slots) connections at once: past that,
// Accept waits until one of them closes, as
// golang.org/x/net/netutil.LimitListener does. It is our own so that a
// connection still unwraps to its socket (NetConn), which peerGone needs to
// see a long poll's client leave; x/net's wrapper hides it.
//
// With perAddress > 0 it also holds at most perAddress connections from
// one address (an IPv6 one by its /64, what one host is usually given):
// one more is closed as soon as it is accepted, without an answer, so that
// one host cannot take every slot.
type limitListener struct {
	net.Listener
	log       *slog.Logger
	slots     chan struct{}
	closed    chan struct{}
	closeOnce sync.Once

	perAddress int
	mu         sync.Mutex
	byAddress  map[netip.Prefix]int // connections open, by addressPrefix
	refusedAt  time.Time            // when a refusal was last logged
}

func newLimitListener(ln net.Listener, n, perAddress int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, log: log, slots: make(chan struct{}, n), closed: make(chan struct{}),
		perAddress: perAddress, byAddress: map[netip.Prefix]int{}}
}

// addressPrefix is what a connection from addr counts against: the
// address itself, an IPv6 one's /64. ok is false for an address that is
// not IP (a Unix socket): not counted.
func addressPrefix(addr net.Addr) (netip.Prefix, bool) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}, false
	}
	ip := tcp.AddrPort().Addr().Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, err := ip.WithZone("").Prefix(64)
	return p, err == nil
}

// admit counts c against its address, or refuses it (false) when the
// address holds perAddress connections already. release undoes it.
func (l *limitListener) admit(c net.Conn) (release func(), ok bool) {
	if l.perAddress <= 0 {
		return func() {}, true
	}
	prefix, counted := addressPrefix(c.RemoteAddr())
	if !counted {
		return func() {}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byAddress[prefix] >= l.perAddress {
		if now := time.Now(); now.Sub(l.refusedAt) >= time.Minute {
			l.refusedAt = now
			// At most one line a minute: a flood would otherwise be one
			// line a connection.
			l.log.Warn("server: connection closed: its address holds the most connections one address may",
				slog.String("address", prefix.String()), slog.Int("max_connections_per_address", l.perAddress))
		}
		return nil, false
	}
	l.byAddress[prefix]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.byAddress[prefix]--; l.byAddress[prefix] == 0 {
			delete(l.byAddress, prefix)
		}
	}, true
}

// Accept takes a slot, then a connection; a listener closed while waiting
// for a slot returns the error the closed listener gives.
//
// A failure to accept that passes (the process or the system out of
// descriptors, buffers or memory: EMFILE, ENFILE, ENOBUFS, ENOMEM, as a
// flood of connections brings about) is logged and waited out, with a
// pause from 5 ms doubling to 1 s, as net/http does. fasthttp takes any
// error but a timeout for the listener's end and stops serving, and
// `serve` then stops the service: idle connections alone, from anyone,
// would have been enough.
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
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			release, ok := l.admit(c)
			if !ok {
				c.Close()
				continue
			}
			return &limitConn{Conn: c, release: func() { release(); <-l.slots }}, nil
		}
		if !passing(err) {
			<-l.slots
			return nil, err
		}
		pause = min(max(2*pause, 5*time.Millisecond), time.Second)
		l.log.Warn("server: accepting a connection failed; trying again", slog.Any("error", err), slog.String("retry_in", pause.String()))
		wait := time.NewTimer(pause)
		select {
		case <-wait.C:
		case <-l.closed:
			wait.Stop()
			<-l.slots
			return nil, net.ErrClosed
		}
	}
}

// passing reports whether an accept error is one that passes: a resource
// the process or the system has run out of for now, or a connection that
// failed on its way in.
func passing(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, errno := range []syscall.Errno{
		syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		// The network errors accept(2) passes on from a connection that
		// failed before it was accepted, which it says to retry as EAGAIN.
		syscall.ENETDOWN, syscall.EPROTO, syscall.ENOPROTOOPT, syscall.EHOSTDOWN,
		syscall.EHOSTUNREACH, syscall.EOPNOTSUPP, syscall.ENETUNREACH,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
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
