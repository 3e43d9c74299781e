package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"billingapi/sandbox"

	"github.com/stripe/stripe-go/v76"
)

func TestLoadSandboxConfig(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	t.Run("DefaultsAreTheDevelopmentOnes", func(t *testing.T) {
		c, err := LoadSandboxConfig(env())
		if err != nil {
			t.Fatal(err)
		}
		want := SandboxConfig{Addr: "127.0.0.1:12111", DataDir: "data/sandbox", WebhookURL: "http://127.0.0.1:8000/webhooks/stripe/",
			WebhookSecret: "whsec_development_only_secret", SecretKey: "sk_test_sandbox", FailedRenewal: "cancel"}
		if c != want {
			t.Fatalf("got %+v\nwant %+v", c, want)
		}
	})
	t.Run("FirstWebhookSecretSigns", func(t *testing.T) {
		c, err := LoadSandboxConfig(env("STRIPE_WEBHOOK_SECRET", "whsec_new, whsec_old"))
		if err != nil || c.WebhookSecret != "whsec_new" {
			t.Fatalf("%+v %v", c, err)
		}
	})
	bad := []struct{ name, key, value, says string }{
		{"Production", "APP_ENV", "production", "APP_ENV"},
		{"LiveKey", "STRIPE_SECRET_KEY", "sk_live_abc", "STRIPE_SECRET_KEY"},
		{"BadAddr", "SANDBOX_ADDR", "nowhere", "SANDBOX_ADDR"},
		{"BadWebhookURL", "SANDBOX_WEBHOOK_URL", "ftp://x", "SANDBOX_WEBHOOK_URL"},
		{"BadSecret", "STRIPE_WEBHOOK_SECRET", "secret", "STRIPE_WEBHOOK_SECRET"},
		{"BadChaos", "SANDBOX_CHAOS", "maybe", "SANDBOX_CHAOS"},
		{"BadFailedRenewal", "SANDBOX_FAILED_RENEWAL", "forgive", "SANDBOX_FAILED_RENEWAL"},
	}
	for _, tc := range bad {
		t.Run(tc.name+"IsRefused", func(t *testing.T) {
			_, err := LoadSandboxConfig(env(tc.key, tc.value))
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%s=%s: %v", tc.key, tc.value, err)
			}
			if strings.Contains(err.Error(), "sk_live_abc") {
				t.Fatal("the error shows the key")
			}
		})
	}
}

// startSandbox serves a sandbox on a loopback port and returns its config.
func startSandbox(t *testing.T) (SandboxConfig, *sandbox.Server) {
	t.Helper()
	sb, err := sandbox.New(sandbox.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: sb}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); sb.Close() })
	return SandboxConfig{Addr: ln.Addr().String(), SecretKey: "sk_test_x", WebhookSecret: "whsec_x"}, sb
}

func TestSeedCatalogCreatesThePlansOnce(t *testing.T) {
	cfg, _ := startSandbox(t)
	sc := sandboxClient(cfg.baseURL(), cfg.SecretKey)
	for range 2 {
		keys, err := seedCatalog(context.Background(), sc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(keys, ",") != "starter_monthly,starter_yearly,pro_monthly,pro_yearly" {
			t.Fatalf("keys %v", keys)
		}
	}
	prices, products := 0, map[string]string{}
	lp := &stripe.PriceListParams{}
	lp.AddExpand("data.product")
	for it := sc.Prices.List(lp); it.Next(); prices++ {
		pr := it.Price()
		products[pr.Product.ID] = pr.Product.Metadata["plan"]
		if pr.LookupKey == "pro_yearly" && (pr.UnitAmount != 29000 || pr.Recurring.Interval != "year") {
			t.Fatalf("pro_yearly is %d per %s", pr.UnitAmount, pr.Recurring.Interval)
		}
	}
	if prices != 4 || len(products) != 2 {
		t.Fatalf("%d prices over %d products after seeding twice; want 4 over 2 (%v)", prices, len(products), products)
	}
}

func TestSandboxAdvanceCommand(t *testing.T) {
	cfg, sb := startSandbox(t)
	before := sb.Now()
	env := map[string]string{"SANDBOX_ADDR": cfg.Addr, "STRIPE_SECRET_KEY": "sk_test_x"}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"sandbox", "advance", "720h"}, getenv, &out, &out); err != nil {
		t.Fatal(err)
	}
	if d := sb.Now().Sub(before); d < 720*time.Hour || d > 721*time.Hour {
		t.Fatalf("the clock moved %s, want 720h", d)
	}
	if !strings.Contains(out.String(), "sandbox clock now") {
		t.Fatalf("output %q", out.String())
	}
	for _, args := range [][]string{{"sandbox", "advance"}, {"sandbox", "advance", "-5h"}, {"sandbox", "advance", "soon"}, {"sandbox", "rewind"}} {
		if err := run(context.Background(), args, getenv, &out, &out); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	env["SANDBOX_ADDR"] = "127.0.0.1:1"
	if err := run(context.Background(), []string{"sandbox", "advance", "1h"}, getenv, &out, &out); err == nil || !strings.Contains(err.Error(), "SANDBOX_ADDR") {
		t.Fatalf("advance with no sandbox running: %v", err)
	}
}
