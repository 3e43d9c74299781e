package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/internal/stripeevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"
)

// These benchmarks run the request path in one process, on PostgreSQL and
// Redis, through the server's own handler (no network), so that
// `go test -bench . -cpuprofile` profiles our stack alone. The load test of
// the whole system is `make bench` (bench/).
//
//	go test ./server -run '^$' -bench 'HTTP' -benchmem -cpuprofile cpu.out

const benchWebhookSecret = "whsec_bench_secret"

type benchWorld struct {
	m     *Main
	h     http.Handler
	token string
	wsID  string
}

func newBenchWorld(b *testing.B) *benchWorld {
	b.Helper()
	fake := stripefake.New(b, testenv.StripeMock(b))
	fake.SetPrices(
		stripefake.Price{LookupKey: "starter_monthly", UnitAmount: 900, Interval: "month", Active: true, ProductID: "prod_starter",
			ProductName: "Starter", ProductMetadata: map[string]string{"plan": "starter", "feature_set": "projects"}},
		stripefake.Price{LookupKey: "pro_monthly", UnitAmount: 2900, Interval: "month", Active: true, ProductID: "prod_pro",
			ProductName: "Pro", ProductMetadata: map[string]string{"plan": "pro", "feature_set": "projects,sso"}},
		stripefake.Price{LookupKey: "pro_yearly", UnitAmount: 29000, Interval: "year", Active: true, ProductID: "prod_pro",
			ProductName: "Pro", ProductMetadata: map[string]string{"plan": "pro", "feature_set": "projects,sso"}},
	)
	redisURL, prefix := testenv.Redis(b)
	vars := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "DATABASE_URL": testenv.Postgres(b), "REDIS_URL": redisURL, "REDIS_KEY_PREFIX": prefix,
		"STRIPE_SECRET_KEY": testenv.StripeMockKey, "STRIPE_WEBHOOK_SECRET": benchWebhookSecret, "STRIPE_API_BASE": fake.URL,
		"PLAN_LOOKUP_KEYS": "starter_monthly,pro_monthly,pro_yearly", "RATE_LIMIT_PER_MINUTE": "100000",
	}
	cfg, err := LoadConfig(func(k string) string { return vars[k] })
	if err != nil {
		b.Fatal(err)
	}
	// The real server logs a text line per request to stderr; format it
	// the same way, into nothing.
	m := NewMain(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Open(ctx); err != nil {
		_ = m.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	w := &benchWorld{m: m, h: m.server.Handler}
	w.token, err = auth.NewHS256Signer([]byte(cfg.JWT.HS256Secret), "", "").
		Mint(auth.Claims{Subject: "bench", Email: "bench@example.com", Name: "Bench"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	var out struct {
		Data struct {
			CreateWorkspace struct{ ID string } `json:"createWorkspace"`
		} `json:"data"`
	}
	raw := w.post(b, `{"query":"mutation { createWorkspace(input: {name: \"Bench\"}) { id } }"}`)
	if err := json.Unmarshal(raw, &out); err != nil || out.Data.CreateWorkspace.ID == "" {
		b.Fatalf("create workspace: %s", raw)
	}
	w.wsID = out.Data.CreateWorkspace.ID
	sub := stripefake.SubscriptionJSON(stripefake.Subscription{ID: "sub_bench", Status: "active", PriceID: "price_pro_monthly",
		LookupKey: "pro_monthly", Metadata: map[string]string{"workspace_id": w.wsID, "plan": "pro"}})
	if code := w.webhook(stripeevent.Event("evt_bench_sub", "customer.subscription.created", sub, time.Now().Add(-time.Hour))); code != http.StatusOK {
		b.Fatalf("webhook: %d", code)
	}
	for w.m.Worker.ProcessDue(context.Background()) > 0 {
	}
	return w
}

// post runs one GraphQL request through the handler and fails on errors.
func (w *benchWorld) post(tb testing.TB, body string) []byte {
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+w.token)
	req.RemoteAddr = "127.0.0.1:1234"
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte(`"errors"`)) {
		tb.Fatalf("HTTP %d: %s", rec.Code, rec.Body.String())
	}
	return rec.Body.Bytes()
}

func (w *benchWorld) webhook(body []byte) int {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripeevent.Sign(body, benchWebhookSecret, time.Now()))
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, req)
	return rec.Code
}

func (w *benchWorld) parallel(b *testing.B, body string) {
	w.post(b, body)      // warm caches
	b.SetParallelism(16) // 32 requests in flight on 2 cores, as in make bench
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.post(b, body)
		}
	})
}

// BenchmarkHTTPTypename is B0's request: the ceiling of our stack.
func BenchmarkHTTPTypename(b *testing.B) {
	newBenchWorld(b).parallel(b, `{"query":"{ __typename }"}`)
}

// BenchmarkHTTPPlansWarm is B1's request: plans from a warm price cache.
func BenchmarkHTTPPlansWarm(b *testing.B) {
	newBenchWorld(b).parallel(b, `{"query":"{ plans { lookupKey unitAmount currency interval product { name plan features } } }"}`)
}

// BenchmarkHTTPWorkspaceStatus is B2's request: access and subscription
// from a warm status cache.
func BenchmarkHTTPWorkspaceStatus(b *testing.B) {
	w := newBenchWorld(b)
	w.parallel(b, fmt.Sprintf(`{"query":"{ workspace(id: \"%s\") { access { level } subscription { status } } }"}`, w.wsID))
}

// BenchmarkHTTPWebhookStore is the webhook endpoint: verify and store
// (the worker is left to apply them).
func BenchmarkHTTPWebhookStore(b *testing.B) {
	w := newBenchWorld(b)
	var n atomic.Int64
	meta := map[string]string{"workspace_id": w.wsID, "purpose": "credits_pack"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := n.Add(1)
			pi := stripefake.PaymentIntentJSON(fmt.Sprintf("pi_store_%d", k), "succeeded", 1999, "usd", meta)
			body := stripeevent.Event(fmt.Sprintf("evt_store_%d", k), "payment_intent.succeeded", pi, time.Now())
			if code := w.webhook(body); code != http.StatusOK {
				b.Fatalf("webhook: %d", code)
			}
		}
	})
}
