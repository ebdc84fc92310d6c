package edge

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// DefaultConnsPerAddress is the default bound on the open connections of
// one client address.
const DefaultConnsPerAddress = 256

// DefaultTrustedPeers are the peers whose connections are not counted by
// default: loopback, where a reverse proxy or sidecar on the same host
// connects from (every client of the proxy would otherwise share its one
// allowance), as do local tools and load generators.
var DefaultTrustedPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// ConnLimits bounds the connections a listener holds per client address.
// The zero value is the documented default.
type ConnLimits struct {
	// PerAddress bounds the open connections of one TCP peer address
	// (IPv6 addresses by /64). Zero means DefaultConnsPerAddress; negative
	// means no limit.
	PerAddress int
	// Trusted are the peers (reverse proxies) not counted: their
	// connections carry many clients. Nil means DefaultTrustedPeers; an
	// empty non-nil list trusts no one.
	Trusted []netip.Prefix
}

// LimitListener wraps a listener so that a peer address holding
// PerAddress open connections has further ones closed as soon as they are
// accepted, before a byte is read: the connection costs no goroutine, no
// buffer and no TLS handshake. Trusted peers are not counted.
type LimitListener struct {
	net.Listener
	max     int
	trusted []netip.Prefix
	refused atomic.Int64

	mu   sync.Mutex
	open map[netip.Addr]int
}

// NewLimitListener returns ln bounded by lim. Closing it closes ln.
func NewLimitListener(ln net.Listener, lim ConnLimits) *LimitListener {
	l := &LimitListener{Listener: ln, max: lim.PerAddress, trusted: lim.Trusted, open: make(map[netip.Addr]int)}
	if l.max == 0 {
		l.max = DefaultConnsPerAddress
	}
	if l.trusted == nil {
		l.trusted = DefaultTrustedPeers
	}
	return l
}

// Refused returns the number of connections closed for being over the
// limit.
func (l *LimitListener) Refused() int64 { return l.refused.Load() }

// Accept returns the next connection within the limit; connections over it
// are closed and counted, and Accept waits for another.
func (l *LimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.max < 0 {
			return c, err
		}
		key, ok := l.key(c.RemoteAddr())
		if !ok {
			return c, nil
		}
		l.mu.Lock()
		n := l.open[key]
		if n >= l.max {
			l.mu.Unlock()
			l.refused.Add(1)
			_ = c.Close()
			continue
		}
		l.open[key] = n + 1
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: func() { l.release(key) }}, nil
	}
}

// key returns the address c counts against, or false if it is not
// counted (a trusted peer, or not an IP peer).
func (l *LimitListener) key(a net.Addr) (netip.Addr, bool) {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return netip.Addr{}, false
		}
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64) // one subscriber's block
		return p.Addr(), true
	}
	return ip, true
}

func (l *LimitListener) release(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
