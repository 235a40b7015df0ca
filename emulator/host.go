package emulator

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// hostAllowed reports whether a Host header names this emulator as a
// loopback service: a loopback IP literal, "localhost", or the host of the
// configured base URL, each with or without a port. Checking where the
// connection arrived is not enough: a page on attacker.example whose name
// is rebound to 127.0.0.1 reaches a loopback listener with its own Host.
func (e *Emulator) hostAllowed(hostport string) bool {
	host := hostport
	if h, port, err := net.SplitHostPort(hostport); err == nil {
		if !isPort(port) {
			return false
		}
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if strings.Contains(host, ":") {
		return false // an IPv6 literal must be bracketed
	}
	if strings.EqualFold(host, "localhost") || e.baseHost != "" && strings.EqualFold(host, e.baseHost) {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// isPort accepts 1 to 5 decimal digits.
func isPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// misdirected answers a request whose Host is not this emulator's. The
// body never echoes the Host.
func misdirected(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusMisdirectedRequest)
	w.Write([]byte("421 Misdirected Request: the Cloudflare Images emulator answers only Host localhost, " +
		"a loopback address or its base URL's host\n"))
}
