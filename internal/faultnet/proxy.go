// Package faultnet provides a TCP proxy that injects network failures a
// real server cannot be made to produce on demand: a connection cut, or a
// partition that keeps sockets open but delivers nothing. Tests put it
// between a client and a real server.
package faultnet

import (
	"fmt"
	"net"
	"sync"
)

// Proxy is a TCP proxy that a test puts in front of a server to cut (close every
// connection and reject new ones) or blackhole (stop forwarding bytes while
// keeping the sockets open), and then restore.
type Proxy struct {
	ln     net.Listener
	target string
	closed chan struct{}
	wg     sync.WaitGroup

	// mu guards the fields below.
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	cut   bool
	// flowing is closed while bytes flow. Blackhole replaces it with an
	// open channel, on which every pump then blocks.
	flowing chan struct{}
}

// Start listens on a free loopback port and forwards every connection to
// target. The caller must Close the proxy.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen: %w", err)
	}
	p := &Proxy{
		ln:      ln,
		target:  target,
		closed:  make(chan struct{}),
		conns:   make(map[net.Conn]struct{}),
		flowing: make(chan struct{}),
	}
	close(p.flowing)
	p.wg.Go(p.accept)
	return p, nil
}

// Addr returns the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		reject := p.cut
		p.mu.Unlock()
		if reject {
			conn.Close()
			continue
		}
		p.wg.Go(func() { p.serve(conn) })
	}
}

func (p *Proxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	p.wg.Go(func() { p.pump(server, client) })
	p.pump(client, server)
}

// track records both ends of a proxied connection. It returns false when
// the proxy is cut or closed.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		return false
	default:
	}
	if p.cut {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pump copies src to dst, holding every chunk while the proxy blackholes.
func (p *Proxy) pump(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitFlowing() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) waitFlowing() bool {
	p.mu.Lock()
	flowing := p.flowing
	p.mu.Unlock()
	select {
	case <-flowing:
		return true
	case <-p.closed:
		return false
	}
}

// Cut closes every connection and rejects new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.closeConnsLocked()
}

// Blackhole stops forwarding bytes in both directions, keeping every
// connection open, until Restore.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
		p.flowing = make(chan struct{})
	default:
	}
}

// Restore undoes Cut and Blackhole. Bytes held during a blackhole are
// delivered.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	select {
	case <-p.flowing:
	default:
		close(p.flowing)
	}
}

// Close stops the proxy, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	close(p.closed)
	p.closeConnsLocked()
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) closeConnsLocked() {
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}
