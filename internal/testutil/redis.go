package testutil

import (
	"bufio"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis runs a redis-server on a free loopback port until the test ends
// and returns its URL; kill stops it early. The test is skipped when
// redis-server is not installed (scripts/test.sh installs it).
func Redis(t *testing.T) (url string, kill func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (scripts/test.sh installs it)")
	}
	ip := LoopbackIP(t)
	port := FreePort(t, ip)
	cmd := exec.Command(bin, "--bind", ip.String(), "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(kill)
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	Eventually(t, func() bool { return redisPing(addr) }, 10*time.Second, "redis-server at %s answers", addr)
	return "redis://" + addr, kill
}

// redisPing reports whether the server at addr answers PING.
func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
