package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fault tests need services of their own that they may stop, kill and
// restart without disturbing the other tests: StartPostgres runs a private
// PostgreSQL cluster (initdb in a temporary folder) and StartRedis a
// private redis-server, each on a free loopback port.
//
// Both run as child processes of the test in their own process group, with
// SIGKILL as their parent-death signal, so that a test binary killed by
// `go test -timeout` leaves no server behind. (PostgreSQL is therefore
// started as `postgres` itself rather than through `pg_ctl start`, which
// detaches the postmaster; Stop does what `pg_ctl stop -m fast` does: it
// sends SIGINT and waits for the postmaster to exit.)

// serviceReadyWait bounds how long a service may take to accept
// connections after it is started.
const serviceReadyWait = 30 * time.Second

// PostgresCluster is a PostgreSQL server of the test's own.
type PostgresCluster struct {
	tb   testing.TB
	bin  string // folder holding initdb and postgres
	dir  string // socket folder; the data folder is dir/data
	port int
	cred *syscall.Credential // the postgres OS user when the test runs as root

	mu   sync.Mutex
	proc *child
}

// StartPostgres creates a cluster with initdb (trust authentication,
// superuser postgres) in a fresh temporary folder, starts it on a free
// loopback port and stops it when the test ends. PostgreSQL refuses to run
// as root, so as root the cluster belongs to the `postgres` OS user. The
// binaries come from $TEST_POSTGRES_BIN, else PATH, else the newest
// /usr/lib/postgresql/*/bin; without them the test skips (fails in CI).
func StartPostgres(tb testing.TB) *PostgresCluster {
	tb.Helper()
	bin, err := postgresBin()
	if err != nil {
		Unavailable(tb, "PostgreSQL binaries", err)
	}
	c := &PostgresCluster{tb: tb, bin: bin}
	if os.Geteuid() == 0 {
		if c.cred, err = osUser("postgres"); err != nil {
			Unavailable(tb, "PostgreSQL (as root, the postgres OS user)", err)
		}
	}
	// Not tb.TempDir(): its parent folder is private to the test's user,
	// which the postgres user cannot enter, and its path can be too long
	// for a Unix socket (107 bytes).
	c.dir, err = os.MkdirTemp("", "testenv-pg-")
	if err != nil {
		tb.Fatalf("postgres folder: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(c.dir) })
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			tb.Fatalf("chown %s: %v", c.dir, err)
		}
	}
	initdb := c.command(filepath.Join(bin, "initdb"), "-D", c.dataDir(), "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	// A port chosen now may be taken before postgres binds it: try a few.
	var errs []error
	for attempt := 0; attempt < 3; attempt++ {
		if c.port, err = freePort(); err != nil {
			tb.Fatalf("free port: %v", err)
		}
		if err = c.start(); err == nil {
			tb.Cleanup(func() {
				if err := c.stop(); err != nil {
					tb.Errorf("stop postgres: %v", err)
				}
			})
			return c
		}
		errs = append(errs, err)
	}
	tb.Fatalf("postgres did not start: %v", errors.Join(errs...))
	return nil
}

// URL is the superuser's connection URL of the cluster's postgres
// database.
func (c *PostgresCluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Port is the cluster's TCP port.
func (c *PostgresCluster) Port() int { return c.port }

// Stop shuts the cluster down the way `pg_ctl stop -m fast` does (SIGINT:
// open sessions are rolled back and disconnected) and waits until the
// postmaster has exited. Stopping a stopped cluster does nothing.
func (c *PostgresCluster) Stop() {
	c.tb.Helper()
	if err := c.stop(); err != nil {
		c.tb.Fatalf("stop postgres: %v", err)
	}
}

// Start starts the stopped cluster again on the same port and waits until
// it accepts connections.
func (c *PostgresCluster) Start() {
	c.tb.Helper()
	if err := c.start(); err != nil {
		c.tb.Fatalf("restart postgres on port %d: %v", c.port, err)
	}
}

// Freeze stops (SIGSTOP) the postmaster and every backend: the port still
// accepts TCP connections and open connections stay open, but nothing
// answers, as with a hung host. Thaw (SIGCONT) resumes them.
func (c *PostgresCluster) Freeze() { c.signalAll(syscall.SIGSTOP) }

// Thaw resumes a frozen cluster.
func (c *PostgresCluster) Thaw() { c.signalAll(syscall.SIGCONT) }

// signalAll signals the postmaster first (so that it forks no new
// backend), then its children. Each backend calls setsid(), so the
// postmaster's process group does not hold them: they are found by
// parent pid.
func (c *PostgresCluster) signalAll(sig syscall.Signal) {
	c.tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		c.tb.Fatalf("postgres is not running")
	}
	pid := c.proc.cmd.Process.Pid
	if err := syscall.Kill(pid, sig); err != nil {
		c.tb.Fatalf("signal postgres: %v", err)
	}
	for _, child := range childPIDs(pid) {
		_ = syscall.Kill(child, sig) // it may have exited meanwhile
	}
}

// childPIDs lists the processes whose parent is pid, from /proc.
func childPIDs(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) >= 2 && fields[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

func (c *PostgresCluster) dataDir() string { return filepath.Join(c.dir, "data") }

// command runs name as the cluster's OS user.
func (c *PostgresCluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd
}

func (c *PostgresCluster) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		return errors.New("already running")
	}
	cmd := c.command(filepath.Join(c.bin, "postgres"), "-D", c.dataDir(), "-p", strconv.Itoa(c.port), "-k", c.dir,
		"-c", "listen_addresses=127.0.0.1",
		// The tests stop PostgreSQL cleanly and never crash the machine,
		// so flushing to disk buys nothing but time.
		"-c", "fsync=off", "-c", "full_page_writes=off")
	proc, err := startChild(cmd, filepath.Join(c.dir, "postgres.log"), c.cred)
	if err != nil {
		return err
	}
	db, err := sql.Open("pgx", c.URL()+"&connect_timeout=2")
	if err != nil {
		proc.kill()
		return err
	}
	defer db.Close()
	if err := proc.waitReady(func(ctx context.Context) error { return db.PingContext(ctx) }); err != nil {
		return err
	}
	if err := proc.stillRunning(); err != nil {
		return err // another server answered on the port
	}
	c.proc = proc
	return nil
}

func (c *PostgresCluster) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return nil
	}
	p := c.proc
	c.proc = nil
	// A frozen cluster would never act on SIGINT.
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
	for _, child := range childPIDs(p.cmd.Process.Pid) {
		_ = syscall.Kill(child, syscall.SIGCONT)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(serviceReadyWait):
		p.kill()
		return fmt.Errorf("postgres did not stop within %s of SIGINT; killed\n%s", serviceReadyWait, p.logTail())
	}
}

// RedisServer is a redis-server of the test's own, without persistence:
// after Kill and Start it is empty, as after a crash.
type RedisServer struct {
	tb      testing.TB
	bin     string
	dir     string
	port    int
	cluster bool // a one-node Redis Cluster holding every slot

	mu   sync.Mutex
	proc *child
}

// StartRedis starts redis-server on a free loopback port, without
// persistence, and kills it when the test ends. Without redis-server on
// PATH the test skips (fails in CI).
func StartRedis(tb testing.TB) *RedisServer {
	tb.Helper()
	return startRedis(tb, false)
}

// StartRedisCluster starts a one-node Redis Cluster that holds all 16384
// slots, as StartRedis starts a server. It refuses what a real cluster
// refuses (a command or transaction whose keys hash to different slots:
// CROSSSLOT), so code meant for clusters can be tested against it. URL
// names it as a cluster.
func StartRedisCluster(tb testing.TB) *RedisServer {
	tb.Helper()
	return startRedis(tb, true)
}

func startRedis(tb testing.TB, cluster bool) *RedisServer {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(tb, "redis-server", err)
	}
	r := &RedisServer{tb: tb, bin: bin, dir: tb.TempDir(), cluster: cluster}
	var errs []error
	for attempt := 0; attempt < 3; attempt++ {
		if r.port, err = freePort(); err != nil {
			tb.Fatalf("free port: %v", err)
		}
		if err = r.start(); err == nil {
			tb.Cleanup(r.kill)
			return r
		}
		errs = append(errs, err)
	}
	tb.Fatalf("redis-server did not start: %v", errors.Join(errs...))
	return nil
}

// URL is the server's redis:// URL; for a cluster, in the cluster form
// (its one node named again as addr=).
func (r *RedisServer) URL() string {
	if r.cluster {
		return fmt.Sprintf("redis://127.0.0.1:%d?addr=127.0.0.1:%d", r.port, r.port)
	}
	return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port)
}

// Addr is the server's host:port.
func (r *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Kill ends the server with SIGKILL and waits until it has exited. Killing
// a dead server does nothing.
func (r *RedisServer) Kill() { r.kill() }

// Start starts a killed server again, empty, on the same port, and waits
// until it answers PING.
func (r *RedisServer) Start() {
	r.tb.Helper()
	if err := r.start(); err != nil {
		r.tb.Fatalf("restart redis-server on port %d: %v", r.port, err)
	}
}

func (r *RedisServer) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return errors.New("already running")
	}
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", r.dir}
	if r.cluster {
		// A cluster keeps its node table in a file; a restart starts anew.
		_ = os.Remove(filepath.Join(r.dir, "nodes.conf"))
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Dir = r.dir
	proc, err := startChild(cmd, filepath.Join(r.dir, "redis.log"), nil)
	if err != nil {
		return err
	}
	client := redis.NewClient(&redis.Options{Addr: r.Addr(), DialTimeout: time.Second, MaxRetries: -1})
	defer client.Close()
	if err := proc.waitReady(func(ctx context.Context) error { return client.Ping(ctx).Err() }); err != nil {
		return err
	}
	if err := proc.stillRunning(); err != nil {
		return err // another server answered on the port
	}
	if r.cluster {
		if err := takeEverySlot(client); err != nil {
			proc.kill()
			return err
		}
	}
	r.proc = proc
	return nil
}

// takeEverySlot gives a new cluster node all 16384 slots and waits until
// the cluster reports itself ready.
func takeEverySlot(client *redis.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		return fmt.Errorf("cluster addslotsrange: %w", err)
	}
	for {
		info, err := client.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: %q, %v", info, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *RedisServer) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		r.proc.kill()
		r.proc = nil
	}
}

// child is a started service process.
type child struct {
	cmd     *exec.Cmd
	log     string
	exited  chan struct{}
	waitErr error
}

// startChild starts cmd in its own process group, killed if the test
// process dies, with its output appended to logPath (owned by cred, when
// set, so that the service may write it).
func startChild(cmd *exec.Cmd, logPath string, cred *syscall.Credential) (*child, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	if cred != nil {
		_ = logFile.Chown(int(cred.Uid), int(cred.Gid))
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &child{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitReady polls ping until it succeeds, the process exits, or
// serviceReadyWait passes (the process is then killed).
func (p *child) waitReady(ping func(context.Context) error) error {
	deadline := time.Now().Add(serviceReadyWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited while starting: %v\n%s", filepath.Base(p.cmd.Path), p.waitErr, p.logTail())
		default:
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("%s not ready within %s: %v\n%s", filepath.Base(p.cmd.Path), serviceReadyWait, err, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stillRunning fails when the process has exited (a moment after a
// successful ping, that means another server holds the port).
func (p *child) stillRunning() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v\n%s", filepath.Base(p.cmd.Path), p.waitErr, p.logTail())
	case <-time.After(100 * time.Millisecond):
		return nil
	}
}

// kill ends the whole process group with SIGKILL and waits for the
// process.
func (p *child) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// logTail is the end of the service's log, for error messages.
func (p *child) logTail() string {
	b, _ := os.ReadFile(p.log)
	const keep = 4 << 10
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return "log " + p.log + ":\n" + string(b)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// postgresBin finds the folder of initdb and postgres.
func postgresBin() (string, error) {
	if d := os.Getenv("TEST_POSTGRES_BIN"); d != "" {
		return d, hasPostgres(d)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); hasPostgres(d) == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if hasPostgres(d) == nil {
			return d, nil
		}
	}
	return "", errors.New("no initdb and postgres in $TEST_POSTGRES_BIN, on PATH or under /usr/lib/postgresql/*/bin")
}

func hasPostgres(dir string) error {
	for _, name := range []string{"initdb", "postgres"} {
		if err := isExecutable(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// pgMajor reads the major version from /usr/lib/postgresql/<major>/bin.
func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// osUser returns the credentials of an OS user, to run a child as it.
func osUser(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
