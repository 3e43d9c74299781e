// Command bench is the performance benchmark of the billing API (`make
// bench`). It builds the server, starts it as a child process on a fresh
// PostgreSQL database, the local Redis (under its own key prefix) and a
// recording Stripe fake in front of stripe-mock, drives it with the
// scenarios B0 to B7 of the performance issue, and writes the figures and
// the targets' verdicts to bench/results/latest.md and latest.json.
//
// Every target is a ratio against a baseline measured in the same run.
//
//	go run ./bench            # the full run (what `make bench` does)
//	go run ./bench -quick     # short phases and small counts, for iterating
//	go run ./bench -only B0,B1,B2
//	go run ./bench -only B2 -profile /tmp/prof   # and go tool pprof /tmp/prof/B2.pprof
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"billingapi/auth"
	"billingapi/internal/redact"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/redis/go-redis/v9"
)

const (
	stripeKey     = testenv.StripeMockKey
	webhookSecret = "whsec_bench_signing_secret"
	lookupKeys    = "starter_monthly,pro_monthly,pro_yearly"
)

type options struct {
	quick        bool
	warm, dur    time.Duration
	conns        int
	subscribers  int
	fanoutEvents int
	memEvents    int
	seedEvents   int
	seedWS       int
	seedSubs     int
	only         map[string]bool
	out          string
	pgURL        string
	redisURL     string
	keepLogs     bool
	b3Latency    time.Duration
	serverEnv    listFlag
	profileDir   string
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	log.SetFlags(log.Ltime)
	var o options
	var only string
	flag.BoolVar(&o.quick, "quick", false, "short phases (1 s warm-up, 2 s measured) and scaled-down counts, for iterating")
	flag.DurationVar(&o.warm, "warmup", 3*time.Second, "warm-up of each phase")
	flag.DurationVar(&o.dur, "duration", 10*time.Second, "measured part of each phase")
	flag.IntVar(&o.conns, "conns", 32, "concurrent connections of the HTTP phases")
	flag.IntVar(&o.subscribers, "subscribers", 2000, "B5: websocket subscribers")
	flag.IntVar(&o.fanoutEvents, "fanout-events", 30, "B5: webhooks posted one at a time, per server layout")
	flag.IntVar(&o.memEvents, "memory-events", 100_000, "B6: webhook events between the two heap measurements")
	flag.IntVar(&o.seedEvents, "seed-events", 1_000_000, "B7: stored webhook events")
	flag.IntVar(&o.seedWS, "seed-workspaces", 100_000, "B7: workspaces")
	flag.IntVar(&o.seedSubs, "seed-subscriptions", 200_000, "B7: subscriptions")
	flag.StringVar(&only, "only", "", "comma-separated scenarios to run (B0 always runs); default all")
	flag.StringVar(&o.out, "out", "bench/results", "folder of latest.md and latest.json")
	flag.StringVar(&o.pgURL, "postgres", envOr("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL server to create the bench databases on")
	flag.StringVar(&o.redisURL, "redis", envOr("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis server")
	flag.BoolVar(&o.keepLogs, "keep-logs", false, "keep the servers' logs (their folder is printed)")
	flag.DurationVar(&o.b3Latency, "b3-stripe-latency", 200*time.Millisecond, "B3: latency added to Stripe's price list, so that the 1,000 requests overlap the load")
	flag.StringVar(&o.profileDir, "profile", "", "write profiles of the server to this folder (go tool pprof reads them): CPU during the measured part of B1, B2 (cached and executed: B2x) and B4 (c=16) and during the first seconds of B5 on one server, heap and goroutines with the B5 subscribers idle, heap before and after B6's webhook events")
	flag.Var(&o.serverEnv, "server-env", "KEY=VALUE added to the servers' environment, e.g. DB_MAX_IDLE_CONNS=20 (repeatable); recorded in the results")
	flag.Parse()
	if o.quick { // scale down what was not set explicitly
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		scale := func(name string, v *int, quick int) {
			if !set[name] {
				*v = quick
			}
		}
		if !set["warmup"] {
			o.warm = time.Second
		}
		if !set["duration"] {
			o.dur = 2 * time.Second
		}
		scale("subscribers", &o.subscribers, 200)
		scale("fanout-events", &o.fanoutEvents, 5)
		scale("memory-events", &o.memEvents, 2000)
		scale("seed-events", &o.seedEvents, o.seedEvents/100)
		scale("seed-workspaces", &o.seedWS, o.seedWS/100)
		scale("seed-subscriptions", &o.seedSubs, o.seedSubs/100)
	}
	if only != "" {
		o.only = map[string]bool{"B0": true}
		for _, s := range strings.Split(only, ",") {
			o.only[strings.ToUpper(strings.TrimSpace(s))] = true
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &runner{opt: o, cl: &cleanups{}}
	err := r.run(ctx)
	r.cl.run()
	if r.res != nil {
		if err != nil {
			r.res.Notes = append(r.res.Notes, "run stopped early: "+err.Error())
		}
		if werr := r.res.write(o.out); werr != nil {
			log.Printf("write results: %v", werr)
		} else {
			fmt.Print(r.res.markdown())
			log.Printf("wrote %s and %s", filepath.Join(o.out, "latest.md"), filepath.Join(o.out, "latest.json"))
		}
	}
	if err != nil {
		log.Printf("error: %v", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// runner holds what every scenario shares.
type runner struct {
	opt    options
	cl     *cleanups
	res    *Results
	root   string
	bin    string
	logDir string
	fake   *stripefake.Server
	rdb    *redis.Client
	jwt    *auth.Signer
	jwtKey string

	// figures later scenarios compare with
	b0, b2        latencyStats
	b0runs        []latencyStats
	b2B0          latencyStats // the B0 that B2 was judged against
	b4            b4Run
	idleRSSKiB    int64
	idleStatus    map[string]int64
	idleMetrics   map[string]float64
	idleSmaps     map[string]int64
	perSubDetail  string
	perSubKiB     float64
	perSubMeasure bool
}

func (r *runner) want(id string) bool { return r.opt.only == nil || r.opt.only[id] }

func (r *runner) add(s *Scenario) *Scenario {
	r.res.Scenarios = append(r.res.Scenarios, s)
	return s
}

func (r *runner) run(ctx context.Context) error {
	var err error
	if r.root, err = os.Getwd(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(r.root, "go.mod")); err != nil {
		return errors.New("run from the module root (make bench does)")
	}
	commit := strings.TrimSpace(cmdOutput("git", "rev-parse", "--short", "HEAD"))
	dirty := strings.TrimSpace(cmdOutput("git", "status", "--porcelain", "--untracked-files=no")) != ""
	command := envOr("BENCH_COMMAND", "go run ./bench "+strings.Join(os.Args[1:], " "))
	r.res = &Results{
		Commit: commit, Dirty: dirty, Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(),
		GoVersion: runtime.Version(), Command: strings.TrimSpace(command),
		Settings: Settings{Quick: r.opt.quick, WarmupSeconds: r.opt.warm.Seconds(), MeasureSeconds: r.opt.dur.Seconds(),
			Connections: r.opt.conns, Subscribers: r.opt.subscribers, FanoutEvents: r.opt.fanoutEvents,
			MemoryEvents: r.opt.memEvents, SeedEvents: r.opt.seedEvents, SeedWorkspaces: r.opt.seedWS,
			SeedSubscripts: r.opt.seedSubs, PlanLookupKeys: lookupKeys, StripeLatencyMs: int(r.opt.b3Latency.Milliseconds()),
			ServerEnv: r.opt.serverEnv},
	}

	if r.logDir, err = os.MkdirTemp("", "billing-bench-"); err != nil {
		return err
	}
	if r.opt.keepLogs {
		log.Printf("server logs in %s", r.logDir)
	} else {
		r.cl.add(func() { os.RemoveAll(r.logDir) })
	}
	r.bin = filepath.Join(r.logDir, "billing-server")
	log.Printf("building the server")
	build := exec.CommandContext(ctx, "go", "build", "-o", r.bin, "./server")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./server: %v\n%s", err, out)
	}

	mock, stopMock, err := testenv.StartStripeMock()
	if err != nil {
		return err
	}
	r.cl.add(stopMock)
	r.fake = stripefake.New(benchTB{c: r.cl}, mock)
	r.fake.SetPrices(
		stripefake.Price{LookupKey: "starter_monthly", UnitAmount: 900, Interval: "month", Active: true, ProductID: "prod_starter",
			ProductName: "Starter", ProductMetadata: map[string]string{"plan": "starter", "feature_set": "projects"}},
		stripefake.Price{LookupKey: "pro_monthly", UnitAmount: 2900, Interval: "month", Active: true, ProductID: "prod_pro",
			ProductName: "Pro", ProductMetadata: map[string]string{"plan": "pro", "feature_set": "projects,sso", "critical_features": "projects"}},
		stripefake.Price{LookupKey: "pro_yearly", UnitAmount: 29000, Interval: "year", Active: true, ProductID: "prod_pro",
			ProductName: "Pro", ProductMetadata: map[string]string{"plan": "pro", "feature_set": "projects,sso", "critical_features": "projects"}},
	)

	ropts, err := redis.ParseURL(r.opt.redisURL)
	if err != nil {
		return fmt.Errorf("-redis: %w", err)
	}
	r.rdb = redis.NewClient(ropts)
	r.cl.add(func() { r.rdb.Close() })
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", redact.URL(r.opt.redisURL), err)
	}
	r.jwtKey = "bench-" + randomHex(24)
	r.jwt = auth.NewHS256Signer([]byte(r.jwtKey), "", "")

	// World A: an empty database. B0 to B6.
	a, err := r.newWorld(ctx, "a")
	if err != nil {
		return err
	}
	s1, err := a.start(ctx, "a1")
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	r.idleRSSKiB, _ = rssKiB(s1.Pid)
	r.idleStatus, _ = procStatus(s1.Pid)
	r.idleMetrics, _ = s1.metrics()
	r.idleSmaps = smapsOf(s1.Pid, r.bin)
	log.Printf("server a1 idle RSS %.1f MiB", float64(r.idleRSSKiB)/1024)
	if err := a.makeWorkspaces(ctx, s1, r.opt.conns, "a"); err != nil {
		return err
	}

	if err := r.runB0(ctx, a, s1); err != nil {
		return err
	}
	steps := []struct {
		id string
		fn func(context.Context, *world, *serverProc) error
	}{
		{"B1", r.runB1}, {"B2", r.runB2}, {"B3", r.runB3}, {"B4", r.runB4}, {"B5", r.runB5}, {"B6", r.runB6},
	}
	for _, s := range steps {
		if !r.want(s.id) {
			continue
		}
		if err := s.fn(ctx, a, s1); err != nil {
			if ctx.Err() != nil {
				return err
			}
			log.Printf("%s: %v", s.id, err)
			r.add(&Scenario{ID: s.id, Name: "(failed to run)", Error: err.Error()})
		}
	}
	s1.stop()
	if r.want("B7") {
		if err := r.runB7(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			log.Printf("B7: %v", err)
			r.add(&Scenario{ID: "B7", Name: "(failed to run)", Error: err.Error()})
		}
	}
	slices.SortStableFunc(r.res.Scenarios, func(x, y *Scenario) int { return strings.Compare(x.ID, y.ID) })
	return nil
}

func cmdOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	return string(out)
}

// ---- worlds: a database, a Redis prefix, servers ----

type world struct {
	r      *runner
	name   string
	db     *database
	prefix string
	ws     []benchWorkspace
	gen    *eventGen
	polls  atomic.Int64 // the bench's own backlog queries, to subtract from the database's counters
}

// dbStats are PostgreSQL's counters for the world's database.
type dbStats struct{ commits, inserted, updated, returned, fetched, sessions int64 }

func (w *world) dbStats(ctx context.Context) (dbStats, error) {
	var s dbStats
	w.polls.Add(1)
	err := w.db.DB.QueryRowContext(ctx, `SELECT xact_commit, tup_inserted, tup_updated, tup_returned, tup_fetched, sessions
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&s.commits, &s.inserted, &s.updated, &s.returned, &s.fetched, &s.sessions)
	return s, err
}

func (r *runner) newWorld(ctx context.Context, name string) (*world, error) {
	db, err := createDatabase(ctx, r.opt.pgURL, r.cl)
	if err != nil {
		return nil, err
	}
	prefix := "bench:" + randomHex(4) + ":"
	r.cl.add(func() { deleteKeys(context.Background(), r.rdb, prefix+"*") })
	log.Printf("world %s: database %s, Redis prefix %s", name, db.Name, prefix)
	return &world{r: r, name: name, db: db, prefix: prefix}, nil
}

func (w *world) env() []string {
	return append([]string{
		"HTTP_ADDR=127.0.0.1:0",
		"DATABASE_URL=" + w.db.URL,
		"REDIS_URL=" + w.r.opt.redisURL,
		"REDIS_KEY_PREFIX=" + w.prefix,
		"STRIPE_SECRET_KEY=" + stripeKey,
		"STRIPE_PUBLISHABLE_KEY=pk_test_123",
		"STRIPE_WEBHOOK_SECRET=" + webhookSecret,
		"STRIPE_API_BASE=" + w.r.fake.URL,
		"PLAN_LOOKUP_KEYS=" + lookupKeys,
		"JWT_HS256_SECRET=" + w.r.jwtKey,
		"RATE_LIMIT_PER_MINUTE=100000",
	}, w.r.opt.serverEnv...)
}

func (w *world) start(ctx context.Context, name string) (*serverProc, error) {
	p, err := startServer(ctx, name, w.r.bin, w.env(), w.r.logDir, w.r.cl)
	if err != nil {
		return nil, err
	}
	log.Printf("server %s at %s (pid %d)", name, p.URL, p.Pid)
	return p, nil
}

func (r *runner) token(sub string) string {
	t, err := r.jwt.Mint(auth.Claims{Subject: sub, Email: sub + "@example.com", Name: sub}, 24*time.Hour)
	if err != nil {
		panic(err)
	}
	return t
}

// makeWorkspaces creates n workspaces, each with its own owner, and gives
// each an active subscription through a customer.subscription.created
// webhook; it then reads each status once (warming the status cache).
func (w *world) makeWorkspaces(ctx context.Context, srv *serverProc, n int, tag string) error {
	c := newClient(8)
	defer c.CloseIdleConnections()
	w.gen = newEventGen(webhookSecret, "evt_bench_"+tag+"_", nil)
	for i := range n {
		owner := fmt.Sprintf("bench-%s-%s-u%d", w.name, tag, i)
		tok := w.r.token(owner)
		body, _ := json.Marshal(map[string]any{
			"query":     `mutation($n: String!) { createWorkspace(input: {name: $n}) { id } }`,
			"variables": map[string]any{"n": "Bench " + owner},
		})
		raw, err := gqlData(ctx, c, srv.URL, tok, body)
		if err != nil {
			return fmt.Errorf("create workspace: %w", err)
		}
		var out struct {
			Data struct {
				CreateWorkspace struct{ ID string } `json:"createWorkspace"`
			} `json:"data"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || out.Data.CreateWorkspace.ID == "" {
			return fmt.Errorf("create workspace: %s", raw)
		}
		w.ws = append(w.ws, benchWorkspace{ID: out.Data.CreateWorkspace.ID, Owner: owner, Token: tok,
			SubID: fmt.Sprintf("sub_bench_%s_%s_%d", w.name, tag, i)})
	}
	w.gen.ws = w.ws
	for _, ws := range w.ws {
		_, body := w.gen.subscriptionCreated(ws)
		if err := postEvent(ctx, c, srv.URL, webhookSecret, body); err != nil {
			return err
		}
	}
	if _, err := w.waitDrain(ctx, 60*time.Second); err != nil {
		return err
	}
	for _, ws := range w.ws {
		for _, q := range []string{b2Query, b2Executed} {
			raw, err := gqlData(ctx, c, srv.URL, ws.Token, b2Body(q, ws.ID))
			if err != nil {
				return err
			}
			if !strings.Contains(string(raw), `"level":"FULL"`) || !strings.Contains(string(raw), `"status":"ACTIVE"`) {
				return fmt.Errorf("workspace %s has no active subscription after its webhook: %s", ws.ID, raw)
			}
		}
	}
	log.Printf("world %s: %d workspaces with active subscriptions", w.name, n)
	return nil
}

// unapplied reports whether a stored event is still waiting for the
// worker (received). It reads one entry of the index (status,
// next_attempt_at), so polling it while the worker drains a backlog costs
// PostgreSQL the same however long the backlog: a count of the backlog,
// every 20 ms, read all of it (4 ms with 20,000 events due), on the CPU
// the measured server needs.
func (w *world) unapplied(ctx context.Context) (bool, error) {
	w.polls.Add(1)
	var due sql.NullTime
	err := w.db.DB.QueryRowContext(ctx, `SELECT next_attempt_at FROM webhook_events WHERE status = 'received'
		ORDER BY status, next_attempt_at LIMIT 1`).Scan(&due)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// waitDrain waits until no stored event is left unapplied and returns
// when it saw that.
func (w *world) waitDrain(ctx context.Context, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		left, err := w.unapplied(ctx)
		now := time.Now()
		if err != nil || !left {
			return now, err
		}
		if now.After(deadline) {
			var n int
			if err := w.db.DB.QueryRowContext(ctx, `SELECT count(*) FROM webhook_events WHERE status = 'received'`).Scan(&n); err != nil {
				return now, err
			}
			return now, fmt.Errorf("%d events still unapplied after %s", n, timeout)
		}
		select {
		case <-ctx.Done():
			return now, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
