package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// rawConn is a minimal HTTP/1.1 keep-alive client for the load generator:
// net/http's client costs about as much CPU per request as the edge's
// server does, and on a shared two-core machine that CPU would be taken
// from the edge being measured.
type rawConn struct {
	c    net.Conn
	r    *bufio.Reader
	host string
	req  []byte
	body []byte
}

func dialRaw(addr string) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, r: bufio.NewReaderSize(c, 4096), host: addr}, nil
}

func (rc *rawConn) Close() error { return rc.c.Close() }

var errBadResponse = errors.New("bad HTTP response")

// post sends one POST with a JSON body and returns the status code and the
// answer, which is valid until the next call.
func (rc *rawConn) post(path string, body []byte) (int, []byte, error) {
	rc.req = rc.req[:0]
	rc.req = append(rc.req, "POST "...)
	rc.req = append(rc.req, path...)
	rc.req = append(rc.req, " HTTP/1.1\r\nHost: "...)
	rc.req = append(rc.req, rc.host...)
	rc.req = append(rc.req, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	rc.req = strconv.AppendInt(rc.req, int64(len(body)), 10)
	rc.req = append(rc.req, "\r\n\r\n"...)
	rc.req = append(rc.req, body...)
	if err := rc.c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return 0, nil, err
	}
	if _, err := rc.c.Write(rc.req); err != nil {
		return 0, nil, err
	}
	line, err := rc.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	// "HTTP/1.1 201 Created\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	length := -1
	for {
		h, err := rc.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(h) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, nil, fmt.Errorf("%w: %q", errBadResponse, h)
			}
		}
	}
	if length < 0 {
		return 0, nil, fmt.Errorf("%w: no Content-Length", errBadResponse)
	}
	if cap(rc.body) < length {
		rc.body = make([]byte, length)
	}
	rc.body = rc.body[:length]
	if _, err := ioReadFull(rc.r, rc.body); err != nil {
		return 0, nil, err
	}
	return code, rc.body, nil
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
