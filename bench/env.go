package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"billingapi/internal/redact"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/redis/go-redis/v9"
)

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// cleanups runs registered functions in reverse order, once.
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
}

func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// benchTB is the minimal testing.TB that stripefake.New needs outside a
// test: Helper and Cleanup (plus the reporting methods, which log). The
// embedded interface is nil: any other method would panic, and
// stripefake calls none.
type benchTB struct {
	testing.TB
	c *cleanups
}

func (t benchTB) Helper()                           {}
func (t benchTB) Name() string                      { return "bench" }
func (t benchTB) Cleanup(f func())                  { t.c.add(f) }
func (t benchTB) Logf(format string, args ...any)   { log.Printf(format, args...) }
func (t benchTB) Errorf(format string, args ...any) { log.Printf("error: "+format, args...) }
func (t benchTB) Fatalf(format string, args ...any) { log.Panicf(format, args...) }

// ---- PostgreSQL ----

// database is a fresh PostgreSQL database of this run.
type database struct {
	Name string
	URL  string
	DB   *sql.DB // a pool on it, for the bench's own queries
}

// createDatabase creates bench_<random> on the server of adminURL and
// drops it at cleanup.
func createDatabase(ctx context.Context, adminURL string, cl *cleanups) (*database, error) {
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return nil, err
	}
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		return nil, fmt.Errorf("PostgreSQL at %s: %w", redact.URL(adminURL), err)
	}
	name := "bench_" + randomHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, err
	}
	u.Path = "/" + name
	d := &database{Name: name, URL: u.String()}
	d.DB, err = sql.Open("pgx", d.URL)
	if err != nil {
		return nil, err
	}
	d.DB.SetMaxOpenConns(40)
	d.DB.SetMaxIdleConns(40)
	cl.add(func() {
		d.DB.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			log.Printf("drop database %s: %v", name, err)
		}
		admin.Close()
	})
	return d, nil
}

// ---- Redis ----

// deleteKeys deletes every key under prefix.
func deleteKeys(ctx context.Context, rdb *redis.Client, pattern string) {
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			rdb.Del(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Del(ctx, batch...)
	}
}

// ---- the server under test ----

// serverProc is one billing server, a child process of the built binary.
type serverProc struct {
	Name   string
	URL    string
	Pid    int
	Log    string // its stderr (one line per request)
	cmd    *exec.Cmd
	exited chan struct{}
}

const listeningPrefix = "Billing API listening on "

// startServer runs bin with env (plus PATH and HOME), waits until it
// prints its URL and /readyz answers 200.
func startServer(ctx context.Context, name, bin string, env []string, logDir string, cl *cleanups) (*serverProc, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &serverProc{Name: name, Pid: cmd.Process.Pid, Log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); logFile.Close(); close(p.exited) }()
	cl.add(p.stop)
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if line := sc.Text(); !found && strings.HasPrefix(line, listeningPrefix) {
				found = true
				urlc <- strings.TrimSpace(strings.TrimPrefix(line, listeningPrefix))
			}
		}
	}()
	select {
	case p.URL = <-urlc:
	case <-p.exited:
		return nil, fmt.Errorf("server %s exited at start; see %s:\n%s", name, logPath, tail(logPath, 20))
	case <-time.After(90 * time.Second):
		p.stop()
		return nil, fmt.Errorf("server %s printed no URL within 90s; see %s", name, logPath)
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(p.URL + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("server %s not ready within 30s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop asks the server to shut down (SIGTERM) and kills it after 20s.
func (p *serverProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// rssKiB reads VmRSS of the process from /proc.
func rssKiB(pid int) (int64, error) {
	m, err := procStatus(pid)
	if err != nil {
		return 0, err
	}
	v, ok := m["VmRSS"]
	if !ok {
		return 0, errors.New("no VmRSS line")
	}
	return v, nil
}

// procStatus returns the kB fields of /proc/<pid>/status (VmRSS,
// RssAnon, RssFile, ...).
func procStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, nil
}

// metrics reads the server's /metrics (loopback clients need no token)
// and returns the samples by name, labels included as the server writes
// them (`name{label="value",...}`).
func (p *serverProc) metrics() (map[string]float64, error) {
	req, err := http.NewRequest(http.MethodGet, p.URL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	// Uncompressed: a gzip response makes the server allocate a compressor
	// (about 1 MiB) that its pool keeps across a GC cycle or two, and B6's
	// heap figures come from these very scrapes; compressed, they moved by
	// up to 2.9 MiB of the bench's own making (seen in B6's heap profiles).
	req.Header.Set("Accept-Encoding", "identity")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", res.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		cut := strings.LastIndexByte(line, ' ') // label values may hold spaces
		name, val, ok := line[:max(cut, 0)], line[cut+1:], cut > 0
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// smapsOf sums the resident memory of a process's mappings of path by
// permissions (r-xp is code, r--p read-only data, rw-p data), and of its
// anonymous mappings (heap, stacks) under "anon", in KiB.
func smapsOf(pid int, path string) map[string]int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	key := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && len(f) >= 5 { // a mapping's header line
			switch {
			case len(f) >= 6 && f[5] == path:
				key = "binary " + f[1]
			case len(f) == 5 || strings.HasPrefix(f[5], "["):
				key = "anon"
			default:
				key = "other files"
			}
			continue
		}
		if f[0] == "Rss:" && len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			out[key] += n
		}
	}
	return out
}

// profileCPU, with -profile set, records a CPU profile of srv from after
// the warm-up until shortly before the end of the measured part, as
// <profile folder>/<name>.pprof. It returns at once; the profile is
// written in the background (wait for the returned channel).
func (r *runner) profileCPU(srv *serverProc, name string, warm, dur time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if r.opt.profileDir == "" || dur < 2*time.Second {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		time.Sleep(warm)
		secs := int((dur - time.Second) / time.Second)
		res, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", srv.URL, secs))
		if err != nil {
			log.Printf("profile %s: %v", name, err)
			return
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			log.Printf("profile %s: %s", name, res.Status)
			return
		}
		if err := os.MkdirAll(r.opt.profileDir, 0o755); err != nil {
			log.Printf("profile %s: %v", name, err)
			return
		}
		path := filepath.Join(r.opt.profileDir, name+".pprof")
		f, err := os.Create(path)
		if err != nil {
			log.Printf("profile %s: %v", name, err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, res.Body); err != nil {
			log.Printf("profile %s: %v", name, err)
			return
		}
		log.Printf("profile %s written to %s", name, path)
	}()
	return done
}

// saveProfile, with -profile set, saves the server's named profile (heap,
// goroutine, ...) as <profile folder>/<name>.pprof.
func (r *runner) saveProfile(srv *serverProc, profile, name string) {
	if r.opt.profileDir == "" {
		return
	}
	res, err := http.Get(srv.URL + "/debug/pprof/" + profile)
	if err != nil {
		log.Printf("profile %s: %v", name, err)
		return
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		log.Printf("profile %s: %s %v", name, res.Status, err)
		return
	}
	if err := os.MkdirAll(r.opt.profileDir, 0o755); err != nil {
		log.Printf("profile %s: %v", name, err)
		return
	}
	path := filepath.Join(r.opt.profileDir, name+".pprof")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		log.Printf("profile %s: %v", name, err)
		return
	}
	log.Printf("profile %s written to %s", name, path)
}
