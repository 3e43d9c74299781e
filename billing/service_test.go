package billing_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/cache"
	"billingapi/ent"
	_ "billingapi/ent/runtime" // privacy policies
	"billingapi/internal/database"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// fixture is a Service on a real database and Redis, whose Stripe is a
// recording fake in front of stripe-mock.
type fixture struct {
	svc    *billing.Service
	stripe *stripefake.Server
	store  *database.Store
	ctx    context.Context
	redis  *miniredis.Miniredis // only with newFixtureWithEmbeddedRedis
	hook   *stripeHook          // runs test code between Stripe's answer and the Service reading it
}

// newFixture builds a Service over the database at dbURL and the real
// Redis.
func newFixture(t *testing.T, dbURL string, cfg billing.Config) *fixture {
	t.Helper()
	redisURL, prefix := testenv.Redis(t)
	return newFixtureOn(t, dbURL, redisURL, prefix, cfg)
}

// newFixtureWithEmbeddedRedis builds a Service whose Redis is an embedded
// one the test can flush or stop.
func newFixtureWithEmbeddedRedis(t *testing.T, dbURL string, cfg billing.Config) *fixture {
	t.Helper()
	mr := miniredis.RunT(t)
	f := newFixtureOn(t, dbURL, "redis://"+mr.Addr(), "test:", cfg)
	f.redis = mr
	return f
}

func newFixtureOn(t *testing.T, dbURL, redisURL, prefix string, cfg billing.Config) *fixture {
	t.Helper()
	return newReplica(t, dbURL, redisURL, prefix, cfg, nil, nil)
}

// newReplica builds a Service like one server replica: with near, its own
// in-process cache (nil for none), and fake as its Stripe (nil for a new
// one).
func newReplica(t *testing.T, dbURL, redisURL, prefix string, cfg billing.Config, near func(redis.UniversalClient) *cache.Near, fake *stripefake.Server) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	store, err := database.Open(ctx, dbURL, database.Options{})
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	rdb, closeRedis, err := cache.Open(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeRedis() })
	if fake == nil {
		fake = stripefake.New(t, testenv.StripeMock(t))
	}
	log := slog.New(slog.DiscardHandler)
	hook := &stripeHook{}
	cfg.Dialect = store.Dialect
	prices := cache.NewPrices(rdb, prefix, time.Minute, log)
	var n *cache.Near
	if near != nil {
		n = near(rdb)
		prices.Near = n
	}
	svc := billing.New(billing.Deps{
		DB:     store.Client,
		Stripe: billing.NewStripe(billing.StripeOptions{SecretKey: testenv.StripeMockKey, APIBase: fake.URL, WrapTransport: hook.wrap}, log),
		Prices: prices,
		Status: cache.NewStatus(rdb, prefix, log),
		Near:   n,
		Log:    log,
	}, cfg)
	return &fixture{svc: svc, stripe: fake, store: store, ctx: ctx, hook: hook}
}

// stripeHook is the fixture's Stripe transport: after Stripe has answered
// the request set with after, and before the Service reads the answer, it
// runs the test's function once, e.g. to apply a webhook that overtook the
// answer or to cancel the caller's context.
type stripeHook struct {
	base http.RoundTripper

	mu           sync.Mutex
	method, path string
	fn           func()
}

func (h *stripeHook) wrap(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	h.base = rt
	return h
}

// after makes fn run once Stripe has answered the next method request to
// path.
func (h *stripeHook) after(method, path string, fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.method, h.path, h.fn = method, path, fn
}

func (h *stripeHook) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(r)
	h.mu.Lock()
	fn := h.fn
	if fn == nil || r.Method != h.method || r.URL.Path != h.path {
		fn = nil
	} else {
		h.fn = nil
	}
	h.mu.Unlock()
	if err == nil && fn != nil {
		body, rerr := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if rerr != nil {
			return nil, rerr
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		fn()
	}
	return resp, err
}

// flushRedis empties the fixture's Redis.
func (f *fixture) flushRedis(t *testing.T) { t.Helper(); f.redis.FlushAll() }

// stopRedis stops the fixture's Redis.
func (f *fixture) stopRedis(t *testing.T) { t.Helper(); f.redis.Close() }

// as returns a context for a signed-in user.
func (f *fixture) as(userID string) context.Context {
	return auth.NewContext(f.ctx, auth.Viewer{UserID: userID, Email: userID + "@example.com", Name: "User " + userID})
}

// workspace creates a workspace owned by owner and returns its id.
func (f *fixture) workspace(t *testing.T, owner string) uuid.UUID {
	t.Helper()
	ws, err := f.svc.CreateWorkspace(f.as(owner), owner+"'s workspace")
	if err != nil {
		t.Fatalf("create workspace: %v", err)
	}
	return ws.ID
}

// statusOf reads a workspace's billing status as user would: the
// workspace through the privacy rules, then its status.
func (f *fixture) statusOf(t *testing.T, user string, ws uuid.UUID) *billing.BillingStatus {
	t.Helper()
	row, err := f.svc.VisibleWorkspace(f.as(user), ws)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.svc.StatusOf(f.as(user), row)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// join makes user a member of ws with role the way people join: the
// inviter (a context from as) invites them by user id, and they accept.
func (f *fixture) join(inviter context.Context, ws uuid.UUID, user string, role auth.Role) (*ent.Membership, error) {
	inv, err := f.svc.Invite(inviter, billing.InviteInput{WorkspaceID: ws, UserID: user, Role: role})
	if err != nil {
		return nil, err
	}
	return f.svc.AcceptInvitation(f.as(user), inv.ID)
}
