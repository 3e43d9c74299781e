package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"billingapi/internal/stripefake"
)

var (
	b0Body = []byte(`{"query":"{ __typename }"}`)
	b1Body = []byte(`{"query":"{ plans { lookupKey unitAmount currency interval product { name plan features } } }"}`)
)

// b2Query is B2's query; b2Executed asks for the same fields through an
// inline fragment, which the server's response cache does not keep, so
// that every request runs the resolvers.
const (
	b2Query    = `query($id: ID!) { workspace(id: $id) { access { level } subscription { status } } }`
	b2Executed = `query($id: ID!) { workspace(id: $id) { ... on Workspace { access { level } subscription { status } } } }`
)

func b2Body(query, wsID string) []byte {
	b, _ := json.Marshal(map[string]any{"query": query, "variables": map[string]string{"id": wsID}})
	return b
}

func rpsText(s latencyStats) string {
	t := fmt.Sprintf("%.0f req/s, p50 %.2f ms, p99 %.2f ms (1-s windows %.0f..%.0f; %d errors)",
		s.PerSecond, s.P50ms, s.P99ms, s.MinSecRate, s.MaxSecRate, s.Errors)
	if c := cpuText(s.CPU); c != "" {
		t += "; " + c
	}
	return t
}

func errNote(s latencyStats) []string {
	if s.Errors == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d failed requests; first: %s", s.Errors, s.FirstError)}
}

// B0: the ceiling of our own stack. It runs before B1, between B1 and B2
// and after B2, and each of those compares with the mean of the B0 runs
// on either side of it: on a shared machine the capacity drifts, and a
// ratio against a neighbour in time is what stays meaningful.
func (r *runner) runB0(ctx context.Context, w *world, srv *serverProc) error {
	st := r.baseline(ctx, w, srv)
	r.add(&Scenario{ID: "B0", Name: "authenticated `{ __typename }` (POST /graphql)", Figures: map[string]any{"http": st}})
	r.b0 = st
	r.updateB0()
	return nil
}

func (r *runner) baseline(ctx context.Context, w *world, srv *serverProc) latencyStats {
	log.Printf("B0: { __typename }, %d connections (run %d)", r.opt.conns, len(r.b0runs)+1)
	c := newClient(r.opt.conns)
	defer c.CloseIdleConnections()
	st := closedLoop(ctx, r.opt.conns, r.opt.warm, r.opt.dur, func(ctx context.Context, i int) error {
		return gqlCall(ctx, c, srv.URL, w.ws[i%len(w.ws)].Token, b0Body)
	})
	r.b0runs = append(r.b0runs, st)
	log.Printf("B0: %s", rpsText(st))
	r.updateB0()
	return st
}

// updateB0 rewrites the B0 line with every run so far.
func (r *runner) updateB0() {
	for _, s := range r.res.Scenarios {
		if s.ID != "B0" {
			continue
		}
		s.Figures = map[string]any{"runs": r.b0runs}
		var texts []string
		var errs []string
		for i, st := range r.b0runs {
			texts = append(texts, fmt.Sprintf("run %d: %s", i+1, rpsText(st)))
			errs = append(errs, errNote(st)...)
		}
		s.Summary = strings.Join(texts, "; ")
		s.Notes = errs
		var short []string
		for i, st := range r.b0runs {
			short = append(short, fmt.Sprintf("run %d: %.0f req/s, p50 %.2f ms, p99 %.2f ms", i+1, st.PerSecond, st.P50ms, st.P99ms))
		}
		s.Short = strings.Join(short, "; ")
	}
}

// around returns the mean of two B0 runs (throughput and p99).
func around(a, b latencyStats) latencyStats {
	return latencyStats{PerSecond: (a.PerSecond + b.PerSecond) / 2, P99ms: (a.P99ms + b.P99ms) / 2, P50ms: (a.P50ms + b.P50ms) / 2}
}

// B1: plans with a warm price cache.
func (r *runner) runB1(ctx context.Context, w *world, srv *serverProc) error {
	log.Printf("B1: plans, warm cache")
	c := newClient(r.opt.conns)
	defer c.CloseIdleConnections()
	raw, err := gqlData(ctx, c, srv.URL, w.ws[0].Token, b1Body)
	if err != nil {
		return err
	}
	if n := strings.Count(string(raw), `"lookupKey"`); n != 3 {
		return fmt.Errorf("plans answered %d plans, want 3: %s", n, raw)
	}
	before := len(r.fake.Requests())
	prof := r.profileCPU(srv, "B1", r.opt.warm, r.opt.dur)
	st := closedLoop(ctx, r.opt.conns, r.opt.warm, r.opt.dur, func(ctx context.Context, i int) error {
		return gqlCall(ctx, c, srv.URL, w.ws[i%len(w.ws)].Token, b1Body)
	})
	<-prof
	calls := len(r.fake.Requests()) - before
	log.Printf("B1: %s; %d Stripe calls", rpsText(st), calls)
	b0 := around(r.b0runs[len(r.b0runs)-1], r.baseline(ctx, w, srv))
	s := r.add(&Scenario{ID: "B1", Name: "`plans`, warm cache",
		Figures: map[string]any{"http": st, "stripe_calls": calls},
		Summary: rpsText(st) + fmt.Sprintf("; %d Stripe calls", calls), Notes: errNote(st)})
	s.Targets = []Target{
		check("throughput >= 0.85 x B0", ">=", st.PerSecond/b0.PerSecond, 0.85, fmt.Sprintf("%.2f x B0 (%.0f vs %.0f req/s)", st.PerSecond/b0.PerSecond, st.PerSecond, b0.PerSecond)),
		check("p99 <= 2 x B0 p99", "<=", st.P99ms/b0.P99ms, 2, fmt.Sprintf("%.2f x B0 (%.2f ms vs %.2f ms)", st.P99ms/b0.P99ms, st.P99ms, b0.P99ms)),
		check("0 Stripe calls in the phase (warm-up included)", "==", float64(calls), 0, fmt.Sprintf("%d", calls)),
	}
	s.Notes = append(s.Notes, "B0 here is the mean of the B0 runs just before and just after this phase (runs 1 and 2)")
	return nil
}

// B2: workspace access and subscription from the status cache.
func (r *runner) runB2(ctx context.Context, w *world, srv *serverProc) error {
	m0, err0 := srv.metrics()
	st, sessions := r.b2Phase(ctx, w, srv, b2Query, "B2"+w.name)
	m1, err1 := srv.metrics()
	r.b2 = st
	log.Printf("B2: %s", rpsText(st))
	// The same fields, executed every time: what the response cache saves.
	exec, _ := r.b2Phase(ctx, w, srv, b2Executed, "B2x"+w.name)
	log.Printf("B2, executed: %s", rpsText(exec))
	runs := len(r.b0runs)
	b0 := around(r.b0runs[runs-1], r.baseline(ctx, w, srv))
	r.b2B0 = b0
	var cacheText string
	if err := errors.Join(err0, err1); err != nil {
		cacheText = "response cache lookups unknown (/metrics: " + err.Error() + ")"
	} else {
		const lookups = `billingapi_response_cache_lookups_total{result="%s",scope="workspace"}`
		hit, miss := fmt.Sprintf(lookups, "hit"), fmt.Sprintf(lookups, "miss")
		cacheText = fmt.Sprintf("response cache: %.0f hits, %.0f misses (warm-up included)", m1[hit]-m0[hit], m1[miss]-m0[miss])
	}
	s := r.add(&Scenario{ID: "B2", Name: "`workspace(id) { access { level } subscription { status } }`, warm status cache",
		Figures: map[string]any{"http": st, "executed": exec, "new_postgres_sessions": sessions},
		Summary: rpsText(st) + fmt.Sprintf("; %s; %d new PostgreSQL sessions opened by the server during the phase (warm-up included)", cacheText, sessions),
		Notes:   append(errNote(st), errNote(exec)...)})
	s.Targets = []Target{check("throughput >= 0.75 x B0", ">=", st.PerSecond/b0.PerSecond, 0.75,
		fmt.Sprintf("%.2f x B0 (%.0f vs %.0f req/s)", st.PerSecond/b0.PerSecond, st.PerSecond, b0.PerSecond))}
	s.Notes = append(s.Notes,
		fmt.Sprintf("B0 here is the mean of the B0 runs just before and just after the two B2 phases (runs %d and %d)", runs, runs+1),
		fmt.Sprintf("each user's repeated check is answered from the server's response cache (kept per user in the workspace's near-cache group, dropped by every change to the workspace, its memberships or its billing status); the same fields through an inline fragment, which the cache does not keep, so that every request runs the resolvers: %s, %.2f x B0", rpsText(exec), exec.PerSecond/b0.PerSecond))
	return nil
}

// b2Phase runs B2's load with query, profiling the server as profile, and
// returns its figures and the PostgreSQL sessions opened during it.
func (r *runner) b2Phase(ctx context.Context, w *world, srv *serverProc, query, profile string) (st latencyStats, sessions int64) {
	log.Printf("%s: workspace status, %d workspaces", profile, len(w.ws))
	db0, _ := w.dbStats(ctx)
	defer func() {
		time.Sleep(1100 * time.Millisecond) // PostgreSQL publishes its counters every second
		db1, _ := w.dbStats(ctx)
		sessions = db1.sessions - db0.sessions
		log.Printf("%s: %d new PostgreSQL sessions during the phase", profile, sessions)
	}()
	c := newClient(r.opt.conns)
	defer c.CloseIdleConnections()
	bodies := make([][]byte, len(w.ws))
	for i, ws := range w.ws {
		bodies[i] = b2Body(query, ws.ID)
	}
	defer func(prof <-chan struct{}) { <-prof }(r.profileCPU(srv, profile, r.opt.warm, r.opt.dur))
	// sessions is set by the deferred call registered first, which runs
	// last, once the phase and its profile are over.
	return closedLoop(ctx, r.opt.conns, r.opt.warm, r.opt.dur, func(ctx context.Context, i int) error {
		k := i % len(w.ws)
		return gqlCall(ctx, c, srv.URL, w.ws[k].Token, bodies[k])
	}), 0
}

// B3: 1,000 concurrent plans on an empty cache.
func (r *runner) runB3(ctx context.Context, w *world, srv *serverProc) error {
	const n = 1000
	log.Printf("B3: %d concurrent plans on an empty price cache", n)
	keys := strings.Split(lookupKeys, ",")
	var del []string
	for _, k := range keys {
		del = append(del, w.prefix+"{price}:lk:"+k)
	}
	if err := r.rdb.Del(ctx, del...).Err(); err != nil {
		return err
	}
	// A real Stripe answers a price list in a few hundred milliseconds;
	// without that latency the first load could finish before most of
	// the 1,000 requests arrive.
	r.fake.On(stripefake.Rule{Method: http.MethodGet, Path: "/v1/prices", Delay: r.opt.b3Latency, Forward: true})
	defer r.fake.ClearRules()
	before := len(r.fake.Requests())
	c := newClient(n)
	defer c.CloseIdleConnections()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		lat   = make([]time.Duration, n)
		errs  atomic.Int64
		first atomic.Value
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			raw, err := gqlData(ctx, c, srv.URL, w.ws[i%len(w.ws)].Token, b1Body)
			lat[i] = time.Since(t0)
			if err == nil && strings.Count(string(raw), `"lookupKey"`) != len(keys) {
				err = fmt.Errorf("answered %d plans: %.200s", strings.Count(string(raw), `"lookupKey"`), raw)
			}
			if err != nil {
				errs.Add(1)
				first.CompareAndSwap(nil, err.Error())
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(t0)
	perKey := map[string]int{}
	for _, k := range keys {
		perKey[k] = 0
	}
	other := 0
	for _, req := range r.fake.Requests()[before:] {
		if req.Method == http.MethodGet && req.Path == "/v1/prices" {
			for _, k := range stripefake.ListParam(req.Query, "lookup_keys") {
				perKey[k]++
			}
			continue
		}
		other++
	}
	slices.Sort(lat)
	worst := 1
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, perKey[k]))
		if perKey[k] != 1 {
			worst = perKey[k]
		}
	}
	summary := fmt.Sprintf("%d requests in %.0f ms, p50 %.0f ms, p99 %.0f ms, %d errors; Stripe price lists per key: %s; other Stripe calls %d",
		n, ms(wall), ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), errs.Load(), strings.Join(parts, ", "), other)
	s := r.add(&Scenario{ID: "B3", Name: "1,000 concurrent `plans`, empty cache",
		Figures: map[string]any{"requests": n, "wall_ms": ms(wall), "p50_ms": ms(percentile(lat, 0.5)), "p99_ms": ms(percentile(lat, 0.99)),
			"errors": errs.Load(), "stripe_calls_per_key": perKey, "other_stripe_calls": other},
		Summary: summary})
	if e := first.Load(); e != nil {
		s.Notes = append(s.Notes, "first error: "+e.(string))
	}
	s.Targets = []Target{
		check("exactly 1 Stripe call per lookup key", "==", float64(worst), 1, strings.Join(parts, ", ")),
		check("every request answered with the 3 plans", "==", float64(errs.Load()), 0, fmt.Sprintf("%d errors", errs.Load())),
	}
	log.Printf("B3: %s", summary)
	return nil
}

// ---- B4: webhook ingest ----

type ingestStats struct {
	Concurrency      int          `json:"concurrency"`
	Ack              latencyStats `json:"ack"` // the HTTP answers (verified and stored)
	Posted           int64        `json:"posted"`
	AppliedPerSecond float64      `json:"applied_per_second"` // posted / (first post .. last applied)
	DrainSeconds     float64      `json:"drain_seconds"`      // after the last post, until every event was applied
	Statuses         map[string]int
	Published        int64 `json:"published"`
	// CPU per applied event, from the first post until the last event
	// was applied.
	CPU map[string]float64 `json:"cpu_us_per_event"`
	// PostgreSQL's counters per event: committed transactions (each
	// autocommit statement is one), rows inserted, updated and fetched.
	DB map[string]float64 `json:"db_per_event"`
}

func (s ingestStats) text() string {
	return fmt.Sprintf("c=%d: %.0f events/s applied end to end (%d events; acks %.0f/s, ack p50 %.1f ms, p99 %.1f ms; %.1f s to drain after the last post; %d published; statuses %v; %s; per event %.1f PostgreSQL commits, %.1f rows inserted, %.1f updated)",
		s.Concurrency, s.AppliedPerSecond, s.Posted, s.Ack.PerSecond, s.Ack.P50ms, s.Ack.P99ms, s.DrainSeconds, s.Published, s.Statuses, cpuText(s.CPU),
		s.DB["commits"], s.DB["inserted"], s.DB["updated"])
}

// poster posts gen's signed events to a server, as closedLoop's
// operation, and counts those the server accepted.
type poster struct {
	c         *http.Client
	url       string
	gen       *eventGen // swapped only between loops
	n, posted atomic.Int64
}

func (p *poster) post(ctx context.Context, _ int) error {
	_, body := p.gen.next(p.n.Add(1))
	if err := postEvent(ctx, p.c, p.url, webhookSecret, body); err != nil {
		return err
	}
	p.posted.Add(1)
	return nil
}

// ingest posts the event mix at conc for warm (then waits until applied),
// then for dur, and measures until every posted event is applied.
func (w *world) ingest(ctx context.Context, srv *serverProc, conc int, warm, dur time.Duration, tag string) (ingestStats, error) {
	warmGen := newEventGen(webhookSecret, "evt_bench_"+tag+"w_", w.ws)
	gen := newEventGen(webhookSecret, "evt_bench_"+tag+"_", w.ws)
	c := newClient(conc)
	defer c.CloseIdleConnections()
	p := &poster{c: c, url: srv.URL, gen: warmGen}
	if warm > 0 {
		closedLoop(ctx, conc, 0, warm, p.post)
		if _, err := w.waitDrain(ctx, 5*time.Minute); err != nil {
			return ingestStats{}, err
		}
	}
	// Count what the worker publishes on the bus during the phase.
	ps := w.r.rdb.PSubscribe(ctx, w.prefix+"events:*")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return ingestStats{}, err
	}
	var published atomic.Int64
	go func() {
		for range ps.Channel() {
			published.Add(1)
		}
	}()
	p.posted.Store(0)
	p.gen = gen // the warm-up's posts have all returned
	db0, err := w.dbStats(ctx)
	if err != nil {
		return ingestStats{}, err
	}
	polls0 := w.polls.Load()
	cpu0 := sampleCPU()
	t0 := time.Now()
	var prof <-chan struct{}
	if conc > 1 {
		prof = w.r.profileCPU(srv, "B4"+w.name, 0, dur)
	}
	ack := closedLoop(ctx, conc, 0, dur, p.post)
	if prof != nil {
		<-prof
	}
	tPosted := time.Now()
	tDone, err := w.waitDrain(ctx, 10*time.Minute)
	if err != nil {
		return ingestStats{}, err
	}
	cpu1 := sampleCPU()
	time.Sleep(1200 * time.Millisecond) // the last publications; PostgreSQL flushes its counters every second
	polls := w.polls.Load() - polls0
	db1, err := w.dbStats(ctx)
	if err != nil {
		return ingestStats{}, err
	}
	st := ingestStats{CPU: cpuPerOp(cpu0, cpu1, int(p.posted.Load())), Concurrency: conc, Ack: ack, Posted: p.posted.Load(), Published: published.Load(),
		DrainSeconds: tDone.Sub(tPosted).Seconds(), Statuses: map[string]int{}}
	st.AppliedPerSecond = float64(st.Posted) / tDone.Sub(t0).Seconds()
	if st.Posted > 0 {
		per := func(d int64) float64 { return float64(d) / float64(st.Posted) }
		st.DB = map[string]float64{
			"commits": per(db1.commits - db0.commits - polls), "inserted": per(db1.inserted - db0.inserted),
			"updated": per(db1.updated - db0.updated), "fetched": per(db1.fetched - db0.fetched),
		}
	}
	rows, err := w.db.DB.QueryContext(ctx, `SELECT status, count(*) FROM webhook_events WHERE starts_with(stripe_event_id, $1) GROUP BY status`,
		gen.prefix)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var k int
		if err := rows.Scan(&s, &k); err != nil {
			return st, err
		}
		st.Statuses[s] = k
	}
	return st, rows.Err()
}

// insertBaseline measures bare single-row INSERT transactions on the
// world's database at conc: the floor under any stored webhook.
func (w *world) insertBaseline(ctx context.Context, conc int, warm, dur time.Duration, payload []byte) (latencyStats, error) {
	db, err := sql.Open("pgx", w.db.URL)
	if err != nil {
		return latencyStats{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(conc)
	db.SetMaxIdleConns(conc)
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS bench_insert_baseline (
		id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, payload bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return latencyStats{}, err
	}
	var seq atomic.Int64
	tag := randomHex(4)
	st := closedLoop(ctx, conc, warm, dur, func(ctx context.Context, _ int) error {
		_, err := db.ExecContext(ctx, `INSERT INTO bench_insert_baseline (event_id, payload) VALUES ($1, $2)`,
			fmt.Sprintf("evt_%s_%d", tag, seq.Add(1)), payload)
		return err
	})
	return st, nil
}

// b4Run is B4's measurements on one world: the bare INSERT transactions
// that are its baseline, and the webhooks at concurrency 1 and 16.
type b4Run struct {
	ins1, ins16 latencyStats // bare INSERT transactions
	c1, c16     ingestStats
}

// share is B4's figure: applied events/s over bare INSERTs/s.
func share(c ingestStats, ins latencyStats) float64 { return c.AppliedPerSecond / ins.PerSecond }

// b4Phase measures the INSERT baseline, then the webhooks at c=1 and 16;
// tag names the phase in the logs and the event ids.
func (r *runner) b4Phase(ctx context.Context, w *world, srv *serverProc, tag string) (b4Run, error) {
	var b b4Run
	_, sample := newEventGen(webhookSecret, "evt_sample_", w.ws).next(0)
	log.Printf("%s: bare INSERT baseline (payload %d bytes)", tag, len(sample))
	var err error
	if b.ins1, err = w.insertBaseline(ctx, 1, r.opt.warm, r.opt.dur, sample); err != nil {
		return b, err
	}
	if b.ins16, err = w.insertBaseline(ctx, 16, r.opt.warm, r.opt.dur, sample); err != nil {
		return b, err
	}
	log.Printf("%s: INSERT c=1 %s; c=16 %s", tag, rpsText(b.ins1), rpsText(b.ins16))
	log.Printf("%s: webhooks at c=1", tag)
	if b.c1, err = w.ingest(ctx, srv, 1, r.opt.warm, r.opt.dur, strings.ToLower(tag)+"c1"); err != nil {
		return b, err
	}
	log.Printf("%s: %s", tag, b.c1.text())
	log.Printf("%s: webhooks at c=16", tag)
	if b.c16, err = w.ingest(ctx, srv, 16, r.opt.warm, r.opt.dur, strings.ToLower(tag)+"c16"); err != nil {
		return b, err
	}
	log.Printf("%s: %s", tag, b.c16.text())
	return b, nil
}

func (r *runner) runB4(ctx context.Context, w *world, srv *serverProc) error {
	b, err := r.b4Phase(ctx, w, srv, "B4")
	if err != nil {
		return err
	}
	r.b4 = b
	door, err := r.doorAlone(ctx, w)
	if err != nil {
		return err
	}
	c1, c16, ins1, ins16 := b.c1, b.c16, b.ins1, b.ins16
	ratio := share(c16, ins16)
	ackRatio := c16.Ack.PerSecond / ins16.PerSecond
	s := r.add(&Scenario{ID: "B4", Name: "webhook ingest (verify, store, apply, publish), event mix",
		Figures: map[string]any{"c1": c1, "c16": c16, "insert_c1": ins1, "insert_c16": ins16, "door_alone_c16": door},
		Summary: fmt.Sprintf("%s; %s; bare INSERT transactions: c=1 %.0f/s, c=16 %.0f/s", c1.text(), c16.text(), ins1.PerSecond, ins16.PerSecond)})
	s.Targets = []Target{
		check("at c=16, applied events/s >= 0.35 x bare INSERTs/s (c=16)", ">=", ratio, 0.35,
			fmt.Sprintf("%.2f x (%.0f vs %.0f/s)", ratio, c16.AppliedPerSecond, ins16.PerSecond)),
	}
	s.Notes = append(s.Notes, fmt.Sprintf("the HTTP acknowledgement alone (verified and stored, before the worker applies it) runs at %.2f x the INSERT rate at c=16", ackRatio),
		budgetNote(c16, ins16),
		doorNote(door, ins16),
		"mix per 10 events: 3 customer.subscription.updated, 2 invoice.paid, 1 invoice.payment_failed, 2 payment_intent.succeeded, 1 payment_intent.payment_failed, 1 payment_intent.processing, over 32 workspaces with active subscriptions; an event older than the last one applied to its object changes nothing and publishes nothing")
	return nil
}

// doorStats is the webhook door alone: events verified, stored and
// acknowledged by a server that applies none (WEBHOOK_APPLY_DISABLED).
type doorStats struct {
	Ack latencyStats       `json:"ack"`
	CPU map[string]float64 `json:"cpu_us_per_event"`
}

// doorAlone posts the event mix at c=16 to a server of a world of its own
// (a fresh database, so that no worker applies what it stores) that
// applies nothing: what the door costs before any event is applied.
func (r *runner) doorAlone(ctx context.Context, main *world) (doorStats, error) {
	w, err := r.newWorld(ctx, "door")
	if err != nil {
		return doorStats{}, err
	}
	srv, err := startServer(ctx, "door", r.bin, append(w.env(), "WEBHOOK_APPLY_DISABLED=true"), r.logDir, r.cl)
	if err != nil {
		return doorStats{}, err
	}
	defer srv.stop()
	log.Printf("B4: the door alone at c=16 (server %s applies nothing)", srv.URL)
	c := newClient(16)
	defer c.CloseIdleConnections()
	// Their workspaces are in another database: never applied anyway.
	p := &poster{c: c, url: srv.URL, gen: newEventGen(webhookSecret, "evt_door_", main.ws)}
	closedLoop(ctx, 16, 0, r.opt.warm, p.post)
	p.posted.Store(0)
	cpu0 := sampleCPU()
	prof := r.profileCPU(srv, "B4door", 0, r.opt.dur)
	ack := closedLoop(ctx, 16, 0, r.opt.dur, p.post)
	cpu1 := sampleCPU()
	<-prof
	d := doorStats{Ack: ack, CPU: cpuPerOp(cpu0, cpu1, int(p.posted.Load()))}
	log.Printf("B4: door alone %s; %s", rpsText(ack), cpuText(d.CPU))
	return d, nil
}

// doorNote sets the door alone against the target's budget: what is left
// per event for applying, if anything.
func doorNote(d doorStats, ins16 latencyStats) string {
	if ins16.PerSecond == 0 || len(d.CPU) == 0 {
		return "the door alone measured nothing"
	}
	budget := cpuBudget(ins16)
	return fmt.Sprintf("the door alone (verify, store, 200; a server that applies nothing, WEBHOOK_APPLY_DISABLED): %.0f events/s at c=16, %.2f x the INSERT rate, ack p50 %.1f ms, p99 %.1f ms; %s; machine CPU %.0f µs per event against the target's %.0f µs budget, leaving %.0f µs to claim, apply and publish each event",
		d.Ack.PerSecond, d.Ack.PerSecond/ins16.PerSecond, d.Ack.P50ms, d.Ack.P99ms, cpuText(d.CPU), d.CPU["machine"], budget, budget-d.CPU["machine"])
}

// cpuBudget is the machine CPU, in µs, that B4's target leaves each
// event: all the cores' time at 0.35 x the bare INSERT rate.
func cpuBudget(ins16 latencyStats) float64 {
	return float64(runtime.NumCPU()) * 1e6 / (0.35 * ins16.PerSecond)
}

// budgetNote says what the 0.35 x target leaves per event, in machine CPU
// time: at that rate the machine's cores would have this much for each
// event, and the note sets against it what this run spent per event
// outside the server, PostgreSQL and Redis (the load generator and
// interrupt handling), what the three spent, and what one bare INSERT
// transaction cost. With the cores busy, this shows how far the target is
// from the machine, not only from the code.
func budgetNote(c16 ingestStats, ins16 latencyStats) string {
	if ins16.PerSecond == 0 || len(c16.CPU) == 0 {
		return "no CPU budget: the phase measured nothing"
	}
	budget := cpuBudget(ins16)
	outside := c16.CPU["bench"] + c16.CPU["irq"] + c16.CPU["other"]
	ours := c16.CPU["server"] + c16.CPU["postgres"] + c16.CPU["redis"]
	return fmt.Sprintf("CPU budget at the target: %d cores at 0.35 x %.0f/s leave %.0f µs of machine CPU per event; "+
		"per event this run spent %.0f µs outside the server, PostgreSQL and Redis (load generator, interrupts, rest of the machine), "+
		"leaving %.0f µs for the three, which spent %.0f µs (server %.0f, PostgreSQL %.0f, Redis %.0f); one bare INSERT transaction cost %.0f µs of machine CPU",
		runtime.NumCPU(), ins16.PerSecond, budget, outside, budget-outside, ours,
		c16.CPU["server"], c16.CPU["postgres"], c16.CPU["redis"], ins16.CPU["machine"])
}

// ---- B5: fan-out ----

func (r *runner) waitSubscribers(ctx context.Context, servers []*serverProc, want int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		total := 0
		for _, s := range servers {
			m, err := s.metrics()
			if err != nil {
				return err
			}
			total += int(m["billingapi_websocket_subscribers"])
		}
		if total == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d websocket subscribers registered, want %d", total, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// settleGoroutines waits until the server's goroutine count has not moved
// for a second (connections of earlier phases closing), at most 10 s, so
// that what is measured next is not their leaving.
func settleGoroutines(ctx context.Context, srv *serverProc) error {
	last, still := -1.0, 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		m, err := srv.metrics()
		if err != nil {
			return err
		}
		if g := m["go_goroutines"]; g == last {
			if still++; still == 5 {
				return nil
			}
		} else {
			last, still = g, 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func (r *runner) runB5(ctx context.Context, w *world, srv *serverProc) error {
	n := r.opt.subscribers
	target := w.ws[0]
	s := r.add(&Scenario{ID: "B5", Name: fmt.Sprintf("fan-out: %d graphql-transport-ws subscribers, webhooks one at a time", n),
		Figures: map[string]any{}})
	c := newClient(1)
	defer c.CloseIdleConnections()
	post := func(body []byte) error { return postEvent(ctx, c, srv.URL, webhookSecret, body) }
	gen := newEventGen(webhookSecret, "evt_bench_b5_", w.ws)
	var seq atomic.Int64
	next := func(int) (string, []byte) { return gen.paymentEvent(seq.Add(1), target) }

	log.Printf("B5: floor: %d subscribers on a websocket server in the load generator", n)
	floor, err := measureFanoutFloor(ctx, n, r.opt.fanoutEvents)
	if err != nil {
		return fmt.Errorf("B5 floor: %w", err)
	}
	s.Figures["floor"] = floor
	log.Printf("B5: floor: %+v", floor)

	if err := settleGoroutines(ctx, srv); err != nil {
		return err
	}
	rssBefore, _ := rssKiB(srv.Pid)
	m0, err := srv.metrics()
	if err != nil {
		return err
	}
	log.Printf("B5: connecting %d subscribers to one server", n)
	t0 := time.Now()
	f, err := connectFanout(ctx, []string{srv.URL}, n, target.Token, target.ID)
	if err != nil {
		return err
	}
	if err := r.waitSubscribers(ctx, []*serverProc{srv}, n); err != nil {
		f.close()
		return err
	}
	log.Printf("B5: %d subscribers in %s", n, time.Since(t0).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	rssAfter, _ := rssKiB(srv.Pid)
	m1, err := srv.metrics()
	if err != nil {
		f.close()
		return err
	}
	r.perSubKiB = float64(rssAfter-rssBefore) / float64(n)
	r.perSubMeasure = true
	per := func(name string) float64 { return (m1[name] - m0[name]) / float64(n) }
	r.perSubDetail = fmt.Sprintf("per subscriber: %.1f goroutines, %.1f KiB of goroutine stacks, %.1f KiB of heap in use",
		per("go_goroutines"), per("go_memstats_stack_inuse_bytes")/1024, per("go_memstats_heap_inuse_bytes")/1024)
	s.Figures["per_subscriber_goroutines"] = per("go_goroutines")
	s.Figures["per_subscriber_stack_bytes"] = per("go_memstats_stack_inuse_bytes")
	s.Figures["per_subscriber_heap_inuse_bytes"] = per("go_memstats_heap_inuse_bytes")
	log.Printf("B5: %.1f KiB RSS per idle subscriber; %s", r.perSubKiB, r.perSubDetail)
	s.Figures["rss_before_kib"], s.Figures["rss_with_subscribers_kib"] = rssBefore, rssAfter
	r.saveProfile(srv, "heap", "B5-idle-subscribers-heap")
	r.saveProfile(srv, "goroutine", "B5-idle-subscribers-goroutines")
	prof := r.profileCPU(srv, "B5", 0, 4*time.Second)
	one, err := f.run(ctx, r.opt.fanoutEvents, 10*time.Second, next, post)
	<-prof
	f.close()
	if err != nil {
		return err
	}
	one.Servers = 1
	s.Figures["one_server"] = one
	log.Printf("B5: one server: %+v", one)
	if err := r.waitSubscribers(ctx, []*serverProc{srv}, 0); err != nil {
		return err
	}

	srv2, err := w.start(ctx, "a2")
	if err != nil {
		return err
	}
	defer srv2.stop()
	log.Printf("B5: connecting %d subscribers split over two servers", n)
	f, err = connectFanout(ctx, []string{srv.URL, srv2.URL}, n, target.Token, target.ID)
	if err != nil {
		return err
	}
	if err := r.waitSubscribers(ctx, []*serverProc{srv, srv2}, n); err != nil {
		f.close()
		return err
	}
	two, err := f.run(ctx, r.opt.fanoutEvents, 10*time.Second, next, post)
	f.close()
	if err != nil {
		return err
	}
	two.Servers = 2
	s.Figures["two_servers"] = two
	log.Printf("B5: two servers: %+v", two)
	_ = r.waitSubscribers(ctx, []*serverProc{srv, srv2}, 0)

	text := func(x fanoutStats) string {
		return fmt.Sprintf("%d server(s): %d events x %d subscribers, %d delivered, %d missing, p50 %.1f ms, p99 %.1f ms, max %.1f ms (per event, first arrival after the 200: median %.1f ms, max %.1f ms; first to last arrival: median %.1f ms, max %.1f ms)",
			x.Servers, x.Events, x.Subscribers, x.Deliveries, x.Missing, x.P50ms, x.P99ms, x.MaxMs, x.FirstP50ms, x.FirstMaxMs, x.SpreadP50ms, x.SpreadMaxMs)
	}
	s.Summary = text(one) + "; " + text(two)
	s.Targets = []Target{
		check("one server: every subscriber gets every event", "==", float64(one.Missing), 0, fmt.Sprintf("%d missing", one.Missing)),
		check("one server: p99 webhook 200 -> delivery <= 50 ms", "<=", one.P99ms, 50, fmt.Sprintf("%.1f ms", one.P99ms)),
		check("two servers: every subscriber gets every event", "==", float64(two.Missing), 0, fmt.Sprintf("%d missing", two.Missing)),
		check("two servers: p99 webhook 200 -> delivery <= 100 ms", "<=", two.P99ms, 100, fmt.Sprintf("%.1f ms", two.P99ms)),
	}
	s.Notes = append(s.Notes, fmt.Sprintf("floor, measured first: the same %d subscribers and %d events on a websocket server inside the load generator that writes one pre-rendered message to each socket per event, from a goroutine per socket, and does nothing else: p50 %.1f ms, p99 %.1f ms, max %.1f ms (per event, first arrival median %.1f ms, max %.1f ms; first to last: median %.1f ms, max %.1f ms), %d missing; this is what the machine's loopback sockets, websocket framing and the subscribers' reading cost before any of the billing server's work",
		n, floor.Events, floor.P50ms, floor.P99ms, floor.MaxMs, floor.FirstP50ms, floor.FirstMaxMs, floor.SpreadP50ms, floor.SpreadMaxMs, floor.Missing))
	s.Notes = append(s.Notes, "every subscriber is a member of one workspace and every event (payment_intent.succeeded, a new payment each) is for it; webhooks go to the first server; the load generator's own websocket readers (one goroutine each) share the 2 cores with the servers")
	return nil
}

// ---- B6: memory ----

// heapGoal makes the server collect garbage (by sending it cheap
// requests until two more GC cycles have run) and returns the heap goal
// that GC set, which is about twice the live heap it marked (GOGC=100),
// and the live heap derived from it.
func heapGoal(ctx context.Context, srv *serverProc, token string) (goal, live float64, err error) {
	m, err := srv.metrics()
	if err != nil {
		return 0, 0, err
	}
	gc0 := m["go_gc_duration_seconds_count"]
	c := newClient(4)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m, err = srv.metrics(); err != nil {
			return 0, 0, err
		}
		if m["go_gc_duration_seconds_count"] >= gc0+2 {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("no GC cycle within 60s")
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					_ = gqlCall(ctx, c, srv.URL, token, b0Body)
				}
			}()
		}
		wg.Wait()
	}
	goal = m["go_memstats_next_gc_bytes"]
	live = (goal - m["go_memstats_stack_inuse_bytes"]) / 2
	return goal, live, nil
}

func (r *runner) runB6(ctx context.Context, w *world, srv *serverProc) error {
	s := r.add(&Scenario{ID: "B6", Name: "memory", Figures: map[string]any{}})
	idleMiB := float64(r.idleRSSKiB) / 1024
	s.Figures["idle_rss_kib"] = r.idleRSSKiB
	s.Targets = append(s.Targets, check("idle RSS <= 40 MiB", "<=", idleMiB, 40, fmt.Sprintf("%.1f MiB", idleMiB)))
	if r.idleStatus != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("idle RSS breakdown: RssAnon %d KiB, RssFile %d KiB (the mapped binary); Go heap in use %.1f MiB, stacks %.1f MiB, runtime total from the OS (go_memstats_sys_bytes) %.1f MiB, %v goroutines",
			r.idleStatus["RssAnon"], r.idleStatus["RssFile"], r.idleMetrics["go_memstats_heap_inuse_bytes"]/(1<<20),
			r.idleMetrics["go_memstats_stack_inuse_bytes"]/(1<<20), r.idleMetrics["go_memstats_sys_bytes"]/(1<<20), r.idleMetrics["go_goroutines"]))
		s.Figures["idle_status_kib"] = r.idleStatus
	}
	if r.idleSmaps != nil {
		var parts []string
		for _, k := range []string{"binary r-xp", "binary r--p", "binary rw-p", "anon", "other files"} {
			parts = append(parts, fmt.Sprintf("%s %d KiB", k, r.idleSmaps[k]))
		}
		s.Notes = append(s.Notes, "idle RSS by mapping (/proc/pid/smaps): "+strings.Join(parts, ", "))
		s.Figures["idle_smaps_kib"] = r.idleSmaps
	}
	if r.perSubMeasure {
		s.Notes = append(s.Notes, r.perSubDetail)
		s.Figures["rss_per_idle_subscriber_kib"] = r.perSubKiB
		s.Targets = append(s.Targets, check("<= 40 KiB RSS per idle subscriber", "<=", r.perSubKiB, 40,
			fmt.Sprintf("%.1f KiB (%d subscribers)", r.perSubKiB, r.opt.subscribers)))
	}
	// The heap is compared between two steady states of the same work:
	// a first run of events brings the server's pools (database
	// connections with their statement caches, buffers) to their working
	// size, which the phases before B6 left at theirs. The heap right
	// after those phases is reported, not compared.
	_, coldLive, err := heapGoal(ctx, srv, w.ws[0].Token)
	if err != nil {
		return err
	}
	warm := max(int64(r.opt.memEvents)/20, 1)
	log.Printf("B6: %d warm-up webhook events", warm)
	if err := w.postAndDrain(ctx, srv, "evt_bench_b6w_", warm); err != nil {
		return err
	}
	log.Printf("B6: heap before %d webhook events", r.opt.memEvents)
	goal0, live0, err := heapGoal(ctx, srv, w.ws[0].Token)
	if err != nil {
		return err
	}
	r.saveProfile(srv, "heap", "B6-heap-before")
	rss0, _ := rssKiB(srv.Pid)
	total := int64(r.opt.memEvents)
	t0 := time.Now()
	if err := w.postAndDrain(ctx, srv, "evt_bench_b6_", total); err != nil {
		return err
	}
	log.Printf("B6: %d events posted and applied in %s", total, time.Since(t0).Round(time.Second))
	goal1, live1, err := heapGoal(ctx, srv, w.ws[0].Token)
	if err != nil {
		return err
	}
	r.saveProfile(srv, "heap", "B6-heap-after")
	rss1, _ := rssKiB(srv.Pid)
	growth := live1/live0 - 1
	s.Figures["heap_goal_before_bytes"], s.Figures["heap_goal_after_bytes"] = goal0, goal1
	s.Figures["live_heap_before_bytes"], s.Figures["live_heap_after_bytes"] = live0, live1
	s.Figures["live_heap_before_warmup_bytes"] = coldLive
	s.Figures["rss_before_kib"], s.Figures["rss_after_kib"] = rss0, rss1
	s.Targets = append(s.Targets, check(fmt.Sprintf("heap after GC within 10%% before/after %d webhook events", total), "<=",
		abs(growth), 0.10, fmt.Sprintf("%+.1f%% (%.1f -> %.1f MiB)", growth*100, live0/(1<<20), live1/(1<<20))))
	perSub := "not measured (B5 not run)"
	if r.perSubMeasure {
		perSub = fmt.Sprintf("%.1f KiB RSS per idle subscriber", r.perSubKiB)
	}
	s.Summary = fmt.Sprintf("idle RSS %.1f MiB; %s; live heap after GC %.1f MiB before and %.1f MiB after %d events (RSS %.1f -> %.1f MiB)",
		idleMiB, perSub, live0/(1<<20), live1/(1<<20), total, float64(rss0)/1024, float64(rss1)/1024)
	s.Notes = append(s.Notes, "idle RSS: VmRSS of a server just started on an empty database, 2 s after /readyz; per subscriber: VmRSS growth of the server with all B5 subscribers connected and idle, divided by their number; heap after GC: (go_memstats_next_gc_bytes - stack) / 2 from /metrics after two further GC cycles, i.e. the live heap the last GC marked (GOGC=100)",
		fmt.Sprintf("heap before: after %d warm-up events, applied; right after the earlier phases it was %.1f MiB", warm, coldLive/(1<<20)))
	return nil
}

// postAndDrain posts total events of the mix at concurrency 16 and waits
// until the worker has applied them all.
func (w *world) postAndDrain(ctx context.Context, srv *serverProc, prefix string, total int64) error {
	gen := newEventGen(webhookSecret, prefix, w.ws)
	c := newClient(16)
	defer c.CloseIdleConnections()
	var n atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				k := n.Add(1)
				if k > total {
					return
				}
				_, body := gen.next(k)
				if err := postEvent(ctx, c, srv.URL, webhookSecret, body); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if k%20000 == 0 {
					log.Printf("%s: %d events posted", prefix, k)
				}
			}
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return e.(error)
	}
	_, err := w.waitDrain(ctx, 30*time.Minute)
	return err
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// ---- B7: growth ----

func (r *runner) runB7(ctx context.Context) error {
	b, err := r.newWorld(ctx, "b")
	if err != nil {
		return err
	}
	srv, err := b.start(ctx, "b1") // applies the migrations
	if err != nil {
		return err
	}
	defer srv.stop()
	log.Printf("B7: seeding %d events, %d workspaces, %d subscriptions", r.opt.seedEvents, r.opt.seedWS, r.opt.seedSubs)
	t0 := time.Now()
	if err := seedGrowth(ctx, b.db.DB, r.opt.seedWS, r.opt.seedSubs, r.opt.seedEvents); err != nil {
		return err
	}
	seedTime := time.Since(t0)
	var size string
	_ = b.db.DB.QueryRowContext(ctx, `SELECT pg_size_pretty(pg_database_size(current_database()))`).Scan(&size)
	if err := b.makeWorkspaces(ctx, srv, r.opt.conns, "b"); err != nil {
		return err
	}
	// B2 is compared as B2 is judged, against B0 around it: the seeded
	// run comes minutes after the empty one, and the machine's speed
	// moves between them (B0 itself has moved by 20 %).
	b0a := r.baseline(ctx, b, srv)
	b2, _ := r.b2Phase(ctx, b, srv, b2Query, "B2"+b.name)
	log.Printf("B7: B2 %s", rpsText(b2))
	b0 := around(b0a, r.baseline(ctx, b, srv))
	// B4 too is compared as B4 is judged, against bare INSERTs measured
	// just before it, on the seeded database.
	b4, err := r.b4Phase(ctx, b, srv, "B7")
	if err != nil {
		return err
	}
	c1, c16 := b4.c1, b4.c16
	s := r.add(&Scenario{ID: "B7", Name: fmt.Sprintf("growth: B2 and B4 with %d stored events, %d workspaces, %d subscriptions", r.opt.seedEvents, r.opt.seedWS, r.opt.seedSubs),
		Figures: map[string]any{"b2": b2, "b4_c1": c1, "b4_c16": c16, "b4_insert_c1": b4.ins1, "b4_insert_c16": b4.ins16, "seed_seconds": seedTime.Seconds(), "database_size": size},
		Summary: fmt.Sprintf("B2 %s; B4 %s; %s (database %s, seeded in %.0f s)", rpsText(b2), c1.text(), c16.text(), size, seedTime.Seconds()),
		Notes:   errNote(b2)})
	if r.b2.Requests > 0 {
		seeded, empty := b2.PerSecond/b0.PerSecond, r.b2.PerSecond/r.b2B0.PerSecond
		x := seeded / empty
		s.Targets = append(s.Targets, check("B2 throughput (as a share of B0) >= 0.8 x empty database", ">=", x, 0.8,
			fmt.Sprintf("%.2f x (%.2f x B0 vs %.2f x B0; %.0f vs %.0f req/s)", x, seeded, empty, b2.PerSecond, r.b2.PerSecond)))
		s.Notes = append(s.Notes, fmt.Sprintf("B2 is compared as a share of the B0 runs just before and after it: seeded %.0f req/s against B0 %.0f, empty %.0f against B0 %.0f; the bare throughputs, minutes apart on a shared machine, give %.2f x",
			b2.PerSecond, b0.PerSecond, r.b2.PerSecond, r.b2B0.PerSecond, b2.PerSecond/r.b2.PerSecond))
	}
	if r.b4.c16.Posted > 0 {
		for _, c := range []struct {
			name                string
			seeded, empty       ingestStats
			seededIns, emptyIns latencyStats
		}{
			{"c=1", c1, r.b4.c1, b4.ins1, r.b4.ins1},
			{"c=16", c16, r.b4.c16, b4.ins16, r.b4.ins16},
		} {
			seeded, empty := share(c.seeded, c.seededIns), share(c.empty, c.emptyIns)
			x := seeded / empty
			s.Targets = append(s.Targets, check("B4 "+c.name+" events/s (as a share of bare INSERTs) >= 0.8 x empty database", ">=", x, 0.8,
				fmt.Sprintf("%.2f x (%.3f x INSERTs vs %.3f x; %.0f vs %.0f/s)", x, seeded, empty, c.seeded.AppliedPerSecond, c.empty.AppliedPerSecond)))
		}
		s.Notes = append(s.Notes, fmt.Sprintf("B4 is compared as a share of bare INSERT transactions measured just before it on the same database: seeded c=1 %.0f/s, c=16 %.0f/s; empty c=1 %.0f/s, c=16 %.0f/s; the bare event rates give %.2f x (c=1) and %.2f x (c=16)",
			b4.ins1.PerSecond, b4.ins16.PerSecond, r.b4.ins1.PerSecond, r.b4.ins16.PerSecond,
			c1.AppliedPerSecond/r.b4.c1.AppliedPerSecond, c16.AppliedPerSecond/r.b4.c16.AppliedPerSecond))
	}
	return nil
}
