package process

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Ports for the servers the tests and the benchmark harness start are
// reserved, not merely free a moment ago. Between the moment a port is
// picked and the moment its server binds it, and again while a server is
// down for a restart or a failover, another server could bind it: the
// test would then talk to that server (another test's edge, another
// test's PostgreSQL, which take the same names and credentials) and see
// its data instead of its own. So a port is
//
//   - below the kernel's ephemeral range, where neither bind to port 0
//     nor an outgoing connection's source port ever lands, and
//   - locked (flock on a file named for it in a directory every test
//     process on the machine shares) by the process that took it, for the
//     rest of that process's life; a process that dies drops its locks
//     with it. No other process that reserves ports the same way takes
//     it, and this one does not hand it out twice.
var reserved struct {
	mu    sync.Mutex
	locks map[int]*os.File // held until the process ends
}

// portDir is where the lock files live: one per reserved port.
var portDir = filepath.Join(os.TempDir(), "linli-ports")

// lowestPort is where the reserved ports begin: above the well-known and
// registered services a development machine is likely to run.
const lowestPort = 10000

// FreeAddr returns a loopback address with a port reserved for this
// process (see reserved): free now, below the ephemeral range, and not
// handed to any other process that reserves ports so, even while nothing
// listens on it.
func FreeAddr() (string, error) {
	return reserveAddr(func(lo, hi int) int { return lo + rand.IntN(hi-lo) })
}

// reserveAddr tries ports that pick chooses in [lowestPort, the start of
// the ephemeral range).
func reserveAddr(pick func(lo, hi int) int) (string, error) {
	hi := ephemeralStart()
	for range 1000 {
		port := pick(lowestPort, hi)
		ok, err := reservePort(port)
		if err != nil {
			return "", fmt.Errorf("reserve a port: %w", err)
		}
		if ok {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
		}
	}
	return "", fmt.Errorf("no free loopback port in %d-%d after 1000 tries", lowestPort, hi-1)
}

// ephemeralStart is the first port the kernel hands out on its own
// (ip_local_port_range), 32768 when it cannot be read.
func ephemeralStart() int {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > lowestPort+2000 {
				lo = n
			}
		}
	}
	return lo
}

// reservePort locks port for this process if no process holds it and
// nothing is bound to it; false means try another.
func reservePort(port int) (bool, error) {
	reserved.mu.Lock()
	defer reserved.mu.Unlock()
	if _, ok := reserved.locks[port]; ok {
		return false, nil
	}
	if err := os.MkdirAll(portDir, 0o777); err != nil {
		return false, err
	}
	// Test processes of several users share the directory.
	_ = os.Chmod(portDir, 0o777|os.ModeSticky)
	f, err := os.OpenFile(filepath.Join(portDir, strconv.Itoa(port)), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return false, nil // another user's lock file
		}
		return false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	// Something that does not reserve ports may be bound to it.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		_ = f.Close()
		return false, nil
	}
	if err := l.Close(); err != nil {
		_ = f.Close()
		return false, err
	}
	if reserved.locks == nil {
		reserved.locks = map[int]*os.File{}
	}
	reserved.locks[port] = f
	return true, nil
}

// ListensOn reports whether process pid holds the socket listening on
// addr (127.0.0.1:port): a server that could not bind its port exits,
// and whatever answers there meanwhile is some other process.
func ListensOn(pid int, addr string) (bool, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	ip := net.ParseIP(host).To4()
	port, err := strconv.Atoi(portStr)
	if ip == nil || err != nil {
		return false, fmt.Errorf("listener address %q: want an IPv4 host:port", addr)
	}
	// /proc/net/tcp writes the address as the 32-bit word in host order
	// (little-endian here) and the port big-endian, both in hex.
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], port)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return false, err
	}
	inode := ""
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[3] == "0A" { // 0A: LISTEN
			inode = f[9]
			break
		}
	}
	if inode == "" {
		return false, nil
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false, err
	}
	want := "socket:[" + inode + "]"
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && l == want {
			return true, nil
		}
	}
	return false, nil
}
