package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ChromiumPath returns the path of Debian's chromium, or "" if it is not
// installed. scripts/test.sh installs it.
func ChromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Browser opens url in a headless Chromium with a fake camera and microphone
// (a test pattern and a beep) and media permission granted, and stops it when
// the test ends. The page reports its results to the test itself, for
// example by POSTing to a handler of the test's HTTP server. Without
// chromium, the test is skipped, or fails when the CI variable is set.
func Browser(t testing.TB, url string) {
	t.Helper()
	BrowserWith(t, url, BrowserOptions{})
}

// BrowserOptions changes where and how BrowserWith runs Chromium.
type BrowserOptions struct {
	// Netns, if set, runs Chromium inside that network namespace (ip netns
	// exec: the test must run as root).
	Netns string
	// SecureOrigins are origins Chromium treats as secure, so that a page
	// served over plain http from a non-loopback address may use the
	// camera and microphone.
	SecureOrigins []string
}

// BrowserWith is Browser with options.
func BrowserWith(t testing.TB, url string, o BrowserOptions) {
	t.Helper()
	bin := ChromiumPath()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("testutil: chromium is not installed (scripts/test.sh installs it)")
		}
		t.Skip("chromium is not installed; scripts/test.sh installs it")
	}
	args := []string{
		"--headless=new",
		"--no-sandbox",
		"--disable-gpu",
		"--disable-dev-shm-usage",
		"--disable-quic",
		"--no-first-run",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--disable-default-apps",
		"--disable-extensions",
		"--use-fake-device-for-media-stream",
		"--use-fake-ui-for-media-stream",
		"--autoplay-policy=no-user-gesture-required",
		// Keep WebRTC on loopback: the host has no other network worth
		// gathering, and mDNS names would hide the addresses.
		"--disable-features=WebRtcHideLocalIpsWithMdns",
	}
	if len(o.SecureOrigins) > 0 {
		args = append(args, "--unsafely-treat-insecure-origin-as-secure="+strings.Join(o.SecureOrigins, ","))
	}
	args = append(args,
		"--user-data-dir="+filepath.Clean(t.TempDir()),
		"--remote-debugging-port=0",
		url,
	)
	where := ""
	if o.Netns != "" {
		args = append([]string{"netns", "exec", o.Netns, bin}, args...)
		bin, where = "ip", " in "+o.Netns
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testutil: start chromium%s: %v", where, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// Chromium starts a tree of processes: end the whole group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
}
