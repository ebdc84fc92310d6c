package auth

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr returns the client's IP address: the peer's, or, when the
// peer is a trusted proxy, the right-most X-Forwarded-For address that is
// not itself a trusted proxy (the left part of the header is whatever the
// client sent and cannot be believed). It returns the peer string as given
// if it is not an IP address.
func clientAddr(peer string, h http.Header, trusted []netip.Prefix) string {
	ip, ok := parseIP(peer)
	if !ok {
		return peer
	}
	if !isTrusted(ip, trusted) {
		return ip.String()
	}
	var hops []string
	for _, v := range h.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseIP(strings.TrimSpace(hops[i]))
		if !ok {
			break // garbage from here on to the left: stop at the last good hop
		}
		ip = hop
		if !isTrusted(hop, trusted) {
			break
		}
	}
	return ip.String()
}

// parseIP parses "ip", "ip:port" or "[ipv6]:port".
func parseIP(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
