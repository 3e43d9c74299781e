package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StripeMockKey is a secret key stripe-mock accepts: any key that looks
// like a test-mode secret key does.
const StripeMockKey = "sk_test_123"

const (
	stripeMockPackage   = "github.com/stripe/stripe-mock"
	stripeMockAttempts  = 3
	stripeMockReadyWait = 20 * time.Second
	stripeMockListening = "Listening for HTTP at address: "
)

var stripeMock struct {
	once sync.Once
	url  string
	err  error
	proc *stripeMockProcess
}

// StripeMock returns the base URL (http://127.0.0.1:PORT) of a stripe-mock
// shared by every test in this process, starting it on first use.
//
// The binary is $STRIPE_MOCK_BIN when set (`make test` sets it), else
// <module root>/bin/stripe-mock when it exists, else it is built there once
// from the version go.mod pins. When none of that works the test skips, or
// fails when CI=true. stripe-mock is stateless: every test may share it.
func StripeMock(tb testing.TB) string {
	tb.Helper()
	stripeMock.once.Do(func() {
		stripeMock.url, stripeMock.proc, stripeMock.err = startStripeMock()
	})
	if stripeMock.err != nil {
		Unavailable(tb, "stripe-mock", stripeMock.err)
	}
	select {
	case <-stripeMock.proc.exited:
		tb.Fatalf("stripe-mock (%s) exited during the tests: %v\n%s",
			stripeMock.url, stripeMock.proc.waitErr, stripeMock.proc.output())
	default:
	}
	return stripeMock.url
}

// StartStripeMock starts a stripe-mock of the caller's own, found or built
// as for StripeMock, and returns its base URL and a stop function that
// kills it and waits for it to exit. It is for programs that are not tests
// (the load benchmark); tests share StripeMock's.
func StartStripeMock() (url string, stop func(), err error) {
	url, proc, err := startStripeMock()
	if err != nil {
		return "", nil, err
	}
	return url, proc.kill, nil
}

// stripeMockBinary finds, or builds, the stripe-mock executable.
func stripeMockBinary() (string, error) {
	if p := os.Getenv("STRIPE_MOCK_BIN"); p != "" {
		if err := isExecutable(p); err != nil {
			return "", fmt.Errorf("STRIPE_MOCK_BIN: %w", err)
		}
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "stripe-mock")
	if isExecutable(bin) == nil {
		return bin, nil
	}
	return bin, buildStripeMock(root, bin)
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// moduleRoot walks up from the working directory to the folder holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// buildStripeMock builds the pinned stripe-mock into bin. It builds into a
// temporary file next to bin and renames it, so that test processes of
// other packages building at the same time never run a half-written file.
func buildStripeMock(root, bin string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("no stripe-mock binary and no go command to build it: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	defer os.Remove(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", tmp, stripeMockPackage)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", stripeMockPackage, err, out)
	}
	return os.Rename(tmp, bin)
}

func startStripeMock() (string, *stripeMockProcess, error) {
	bin, err := stripeMockBinary()
	if err != nil {
		return "", nil, err
	}
	var errs []error
	for attempt := 1; attempt <= stripeMockAttempts; attempt++ {
		url, proc, err := startStripeMockOnce(bin)
		if err == nil {
			return url, proc, nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", attempt, err))
	}
	return "", nil, fmt.Errorf("%s did not come up: %w", bin, errors.Join(errs...))
}

// startStripeMockOnce starts stripe-mock on a loopback port the kernel
// chooses, reads the port from the "Listening for HTTP at address:" line
// stripe-mock prints, and waits until it answers API requests.
//
// -https-addr is given too: with -http-addr alone stripe-mock also listens
// for HTTPS on :12112 on every interface, so two test processes (or a test
// and `make run`) would collide there.
func startStripeMockOnce(bin string) (string, *stripeMockProcess, error) {
	p := &stripeMockProcess{
		addr:   make(chan string, 1),
		exited: make(chan struct{}),
	}
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	cmd.Stdout = (*stdoutWatcher)(p)
	cmd.Stderr = (*stderrWriter)(p)
	// Its own process group, and SIGKILL when the test process dies. (The
	// death signal follows the OS thread that started it; Go does not end
	// the threads of goroutines that are not locked to one.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	p.pid = cmd.Process.Pid
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()

	deadline := time.NewTimer(stripeMockReadyWait)
	defer deadline.Stop()
	var addr string
	select {
	case addr = <-p.addr:
	case <-p.exited:
		return "", nil, fmt.Errorf("exited before listening: %v\n%s", p.waitErr, p.output())
	case <-deadline.C:
		p.kill()
		return "", nil, fmt.Errorf("no %q line within %v\n%s", stripeMockListening, stripeMockReadyWait, p.output())
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		p.kill()
		return "", nil, fmt.Errorf("cannot parse listening address %q: %v", addr, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		p.kill()
		return "", nil, fmt.Errorf("cannot parse listening address %q: %v", addr, err)
	}
	url := "http://" + net.JoinHostPort(host, port)

	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for {
		lastErr = probeStripeMock(client, url)
		if lastErr == nil {
			return url, p, nil
		}
		select {
		case <-p.exited:
			return "", nil, fmt.Errorf("exited while starting: %v\n%s", p.waitErr, p.output())
		case <-deadline.C:
			p.kill()
			return "", nil, fmt.Errorf("not ready within %v: %v\n%s", stripeMockReadyWait, lastErr, p.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func probeStripeMock(client *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodGet, url+"/v1/customers", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+StripeMockKey)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v1/customers: %s", resp.Status)
	}
	return nil
}

// stripeMockProcess is a running stripe-mock. It keeps the start of its
// output and the end of it, for error messages; stripe-mock prints a line
// per request, so the middle is dropped.
type stripeMockProcess struct {
	pid     int
	addr    chan string
	exited  chan struct{}
	waitErr error

	mu      sync.Mutex
	line    []byte // stdout since the last newline
	found   bool
	head    bytes.Buffer
	tail    []string
	dropped int
}

const (
	stripeMockHeadBytes = 4 << 10
	stripeMockTailLines = 20
)

func (p *stripeMockProcess) kill() {
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.exited
}

func (p *stripeMockProcess) keep(line string) {
	if p.head.Len()+len(line) <= stripeMockHeadBytes {
		p.head.WriteString(line)
		return
	}
	p.tail = append(p.tail, line)
	if len(p.tail) > stripeMockTailLines {
		p.tail = p.tail[1:]
		p.dropped++
	}
}

func (p *stripeMockProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	b.WriteString("stripe-mock output:\n")
	b.Write(p.head.Bytes())
	if p.dropped > 0 {
		fmt.Fprintf(&b, "[... %d lines ...]\n", p.dropped)
	}
	for _, l := range p.tail {
		b.WriteString(l)
	}
	if len(p.line) > 0 {
		b.Write(p.line)
		b.WriteByte('\n')
	}
	return b.String()
}

type stdoutWatcher stripeMockProcess

func (w *stdoutWatcher) Write(b []byte) (int, error) {
	p := (*stripeMockProcess)(w)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line = append(p.line, b...)
	for {
		i := bytes.IndexByte(p.line, '\n')
		if i < 0 {
			break
		}
		line := string(p.line[:i+1])
		p.line = p.line[i+1:]
		if !p.found && strings.HasPrefix(line, stripeMockListening) {
			p.found = true
			p.addr <- strings.TrimSpace(strings.TrimPrefix(line, stripeMockListening))
		}
		p.keep(line)
	}
	if len(p.line) > 64<<10 { // a runaway line; keep memory bounded
		p.keep(string(p.line) + "\n")
		p.line = p.line[:0]
	}
	return len(b), nil
}

type stderrWriter stripeMockProcess

func (w *stderrWriter) Write(b []byte) (int, error) {
	p := (*stripeMockProcess)(w)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" {
			p.keep("stderr: " + l)
		}
	}
	return len(b), nil
}
