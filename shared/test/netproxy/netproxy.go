// Package netproxy is a TCP proxy on loopback that a test controls: it
// forwards every connection to a target and can cut the link, either by
// resetting every connection and refusing new ones, or by black-holing
// traffic (bytes held, new connections left hanging) as a real partition
// does, and restore it.
package netproxy

import (
	"net"
	"sync"
	"time"
)

// Mode is how a cut behaves.
type Mode int

// Cut modes.
const (
	// Reset closes every connection with a RST and refuses new ones.
	Reset Mode = iota + 1
	// Blackhole stops forwarding in both directions and leaves new
	// connections hanging; on Restore held bytes and connections go on, as
	// after a partition that TCP's retransmissions outlive.
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Reset:
		return "reset"
	case Blackhole:
		return "blackhole"
	}
	return "none"
}

// Stats counts what the proxy did.
type Stats struct {
	Accepted int
	Refused  int   // connections refused while cut (Reset)
	Reset    int   // connections reset by a cut
	Bytes    int64 // bytes forwarded
	Cuts     int
}

// Proxy forwards 127.0.0.1:port to a target.
type Proxy struct {
	target string
	ln     net.Listener

	mu       sync.Mutex
	mode     Mode          // 0 while the link is up
	restored chan struct{} // closed when the link is up
	conns    map[*pair]struct{}
	stats    Stats
	closed   bool
	wg       sync.WaitGroup
}

type pair struct{ a, b net.Conn }

func (p *pair) close() {
	for _, c := range []net.Conn{p.a, p.b} {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a RST, as a dropped link looks to the peer
		}
		_ = c.Close()
	}
}

// Start listens on a free loopback port and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	up := make(chan struct{})
	close(up)
	p := &Proxy{target: target, ln: ln, restored: up, conns: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listen address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut takes the link down in mode.
func (p *Proxy) Cut(mode Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode != 0 {
		return
	}
	p.mode = mode
	p.restored = make(chan struct{})
	p.stats.Cuts++
	if mode == Reset {
		for c := range p.conns {
			c.close()
			p.stats.Reset++
		}
	}
}

// Restore brings the link back up.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == 0 {
		return
	}
	p.mode = 0
	close(p.restored)
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.mode != 0 {
		p.mode = 0
		close(p.restored)
	}
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// gate returns the channel to wait on before forwarding: nil when the link
// is up.
func (p *Proxy) gate() (Mode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == 0 {
		return 0, nil
	}
	return p.mode, p.restored
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.stats.Accepted++
		pr := &pair{a: c}
		p.conns[pr] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(pr)
	}
}

func (p *Proxy) forget(pr *pair) {
	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
	pr.close()
}

func (p *Proxy) serve(pr *pair) {
	defer p.wg.Done()
	defer p.forget(pr)
	// A connection arriving while cut is refused (Reset) or held until
	// the link is back (Blackhole).
	for {
		mode, wait := p.gate()
		if wait == nil {
			break
		}
		if mode == Reset {
			p.mu.Lock()
			p.stats.Refused++
			p.mu.Unlock()
			return
		}
		<-wait
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return
		}
	}
	b, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	pr.b = b
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.copy(pr.b, pr.a); done <- struct{}{} }()
	go func() { p.copy(pr.a, pr.b); done <- struct{}{} }()
	<-done
	pr.close()
	<-done
}

// copy forwards src to dst, holding bytes while the link is black-holed.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for {
				mode, wait := p.gate()
				if wait == nil {
					break
				}
				if mode == Reset {
					return
				}
				<-wait
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			p.mu.Lock()
			p.stats.Bytes += int64(n)
			p.mu.Unlock()
		}
		if err != nil {
			return // EOF or a closed connection: serve closes both sides
		}
	}
}
