package netproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo serves a line echo on loopback.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string, timeout time.Duration) (string, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if len(line) > 0 {
		line = line[:len(line)-1]
	}
	return line, err
}

func TestCutAndRestore(t *testing.T) {
	p, err := Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, "one", 5*time.Second); err != nil || got != "one" {
		t.Fatalf("through the proxy: %q %v", got, err)
	}

	// A black hole holds bytes; they arrive after the restore.
	p.Cut(Blackhole)
	if _, err := roundTrip(c, r, "two", 200*time.Millisecond); err == nil {
		t.Fatal("an answer came through a black hole")
	}
	p.Restore()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "two\n" {
		t.Fatalf("held bytes after restore: %q %v", line, err)
	}

	// A reset kills the connection and refuses new ones until restored.
	p.Cut(Reset)
	if _, err := roundTrip(c, r, "three", 2*time.Second); err == nil {
		t.Fatal("a reset connection still answered")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		r2 := bufio.NewReader(c2)
		if _, err := roundTrip(c2, r2, "four", 2*time.Second); err == nil {
			t.Fatal("a connection made during a reset cut answered")
		}
		c2.Close()
	}
	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, bufio.NewReader(c3), "five", 5*time.Second); err != nil || got != "five" {
		t.Fatalf("after restore: %q %v", got, err)
	}
	if st := p.Stats(); st.Cuts != 2 || st.Reset < 1 || st.Refused < 1 {
		t.Errorf("stats %+v", st)
	}
}
