package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"billingapi/sandbox"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// SandboxConfig is the offline Stripe's configuration, read once from the
// environment (development and tests only).
type SandboxConfig struct {
	Addr          string // SANDBOX_ADDR
	DataDir       string // SANDBOX_DATA
	WebhookURL    string // SANDBOX_WEBHOOK_URL
	WebhookSecret string // the first of STRIPE_WEBHOOK_SECRET
	SecretKey     string // STRIPE_SECRET_KEY: what `advance` and `seed` send
	Chaos         bool   // SANDBOX_CHAOS
	FailedRenewal string // SANDBOX_FAILED_RENEWAL: cancel or unpaid
}

// Development defaults shared by `make run`, the sandbox and its commands.
const (
	defaultSandboxAddr   = "127.0.0.1:12111"
	defaultSandboxData   = "data/sandbox"
	defaultSandboxHook   = "http://127.0.0.1:8000/webhooks/stripe/"
	devWebhookSecret     = "whsec_development_only_secret"
	defaultSandboxAPIKey = "sk_test_sandbox"
)

// LoadSandboxConfig reads the sandbox's variables; it refuses to run with
// APP_ENV=production or a live key, since the sandbox stands in for Stripe.
func LoadSandboxConfig(getenv func(string) string) (SandboxConfig, error) {
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	c := SandboxConfig{
		Addr:          get("SANDBOX_ADDR", defaultSandboxAddr),
		DataDir:       get("SANDBOX_DATA", defaultSandboxData),
		WebhookURL:    get("SANDBOX_WEBHOOK_URL", defaultSandboxHook),
		WebhookSecret: strings.TrimSpace(strings.Split(get("STRIPE_WEBHOOK_SECRET", devWebhookSecret), ",")[0]),
		SecretKey:     get("STRIPE_SECRET_KEY", defaultSandboxAPIKey),
		FailedRenewal: get("SANDBOX_FAILED_RENEWAL", "cancel"),
	}
	var problems []string
	if get("APP_ENV", envDevelopment) == envProduction {
		problems = append(problems, "APP_ENV: the sandbox is for development and tests; it refuses APP_ENV=production")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		problems = append(problems, fmt.Sprintf("SANDBOX_ADDR: %v", err))
	}
	if c.WebhookURL != "none" && !strings.HasPrefix(c.WebhookURL, "http://") && !strings.HasPrefix(c.WebhookURL, "https://") {
		problems = append(problems, "SANDBOX_WEBHOOK_URL: must be an http:// or https:// URL, or none")
	}
	if !strings.HasPrefix(c.WebhookSecret, "whsec_") {
		problems = append(problems, "STRIPE_WEBHOOK_SECRET: must start with whsec_")
	}
	if !strings.HasPrefix(c.SecretKey, "sk_test_") && !strings.HasPrefix(c.SecretKey, "rk_test_") {
		problems = append(problems, "STRIPE_SECRET_KEY: the sandbox takes test keys only (sk_test_ or rk_test_)")
	}
	switch v := get("SANDBOX_CHAOS", "false"); v {
	case "true", "1":
		c.Chaos = true
	case "false", "0":
	default:
		problems = append(problems, fmt.Sprintf("SANDBOX_CHAOS: must be true or false, got %q", v))
	}
	if c.FailedRenewal != "cancel" && c.FailedRenewal != "unpaid" {
		problems = append(problems, fmt.Sprintf("SANDBOX_FAILED_RENEWAL: must be cancel or unpaid, got %q", c.FailedRenewal))
	}
	if c.WebhookURL == "none" {
		c.WebhookURL = ""
	}
	if len(problems) > 0 {
		return c, errors.New("sandbox configuration: " + strings.Join(problems, "; "))
	}
	return c, nil
}

// baseURL is where the sandbox answers, for the Stripe client and pages.
func (c SandboxConfig) baseURL() string {
	host, port, _ := net.SplitHostPort(c.Addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// runSandbox dispatches `server sandbox [serve|advance|seed]`.
func runSandbox(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	var seed bool
	switch sub {
	case "serve":
		fs := newFlagSet("sandbox", stderr)
		fs.BoolVar(&seed, "seed", false, "create the example catalog (starter and pro, monthly and yearly) if it is not there")
		if err := fs.Parse(args); err != nil {
			return err
		}
	case "advance", "seed":
		if helpOnly(args) {
			printCommandUsage(stderr, "sandbox "+sub, nil)
			return nil
		}
	}
	cfg, err := LoadSandboxConfig(getenv)
	if err != nil {
		return err
	}
	switch sub {
	case "serve":
		return serveSandbox(ctx, cfg, seed, stdout, stderr)
	case "advance":
		if len(args) != 1 {
			return errors.New("usage: server sandbox advance DURATION (a Go duration, e.g. 720h)")
		}
		d, err := time.ParseDuration(args[0])
		if err != nil || d <= 0 {
			return fmt.Errorf("advance: %q is not a positive Go duration such as 720h", args[0])
		}
		return advanceSandbox(ctx, cfg, d, stdout)
	case "seed":
		// STRIPE_API_BASE names another Stripe (its test mode) to seed.
		base := strings.TrimSpace(getenv("STRIPE_API_BASE"))
		if base == "" {
			base = cfg.baseURL()
		}
		keys, err := seedCatalog(ctx, sandboxClient(base, cfg.SecretKey))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "catalog ready: PLAN_LOOKUP_KEYS=%s\n", strings.Join(keys, ","))
		return nil
	default:
		return fmt.Errorf("unknown sandbox command %q (want serve, advance or seed)", sub)
	}
}

// serveSandbox runs the sandbox until ctx ends.
func serveSandbox(ctx context.Context, cfg SandboxConfig, seed bool, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sb, err := sandbox.New(sandbox.Options{
		DataDir: cfg.DataDir, PublicURL: cfg.baseURL(),
		WebhookURL: cfg.WebhookURL, WebhookSecret: cfg.WebhookSecret,
		Chaos: cfg.Chaos, FailedRenewal: cfg.FailedRenewal, Log: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		sb.Close()
		return fmt.Errorf("sandbox: listen on %s (SANDBOX_ADDR): %w", cfg.Addr, err)
	}
	hs := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer func() {
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(shutdown)
		sb.Close()
	}()
	var keys []string
	if seed {
		if keys, err = seedCatalog(ctx, sandboxClient(cfg.baseURL(), cfg.SecretKey)); err != nil {
			return err
		}
	}
	printSandboxBanner(stdout, cfg, keys, sb.Now())
	<-ctx.Done()
	return nil
}

func printSandboxBanner(w io.Writer, cfg SandboxConfig, keys []string, now time.Time) {
	fmt.Fprintf(w, "\nStripe sandbox on %s (API %s; state in %s; clock %s)\n", cfg.baseURL(), sandbox.APIVersion, cfg.DataDir, now.Format(time.RFC3339))
	if cfg.WebhookURL != "" {
		fmt.Fprintf(w, "  webhooks    %s\n", cfg.WebhookURL)
	}
	if len(keys) > 0 {
		fmt.Fprintf(w, "  plans       %s\n", strings.Join(keys, ", "))
	}
	fmt.Fprintf(w, "  clock       go run ./server sandbox advance 768h   (32 days: past a monthly renewal; trials and retries too)\n")
	fmt.Fprintf(w, "  test cards on the hosted Checkout and portal pages (any future expiry, any CVC):\n")
	for _, c := range sandbox.TestCards {
		fmt.Fprintf(w, "    %s  %s\n", c.Number, c.Does)
	}
}

// advanceSandbox asks a running sandbox to move its clock.
func advanceSandbox(ctx context.Context, cfg SandboxConfig, d time.Duration, stdout io.Writer) error {
	body, _ := json.Marshal(map[string]string{"duration": d.String()})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.baseURL()+"/_sandbox/advance", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cfg.SecretKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("advance: is the sandbox running on %s (SANDBOX_ADDR)? %w", cfg.Addr, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("advance: the sandbox answered %d: %s", res.StatusCode, bytes.TrimSpace(raw))
	}
	var out struct {
		ClockTime string `json:"clock_time"`
		Pending   int    `json:"pending_deliveries"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("advance: unexpected answer %q", raw)
	}
	fmt.Fprintf(stdout, "sandbox clock now %s; %d webhook deliveries queued\n", out.ClockTime, out.Pending)
	return nil
}

// sandboxClient is a Stripe client for the sandbox (or, with a real test
// key and no base, Stripe's test mode).
func sandboxClient(base, key string) *client.API {
	be := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:           stripe.String(base),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	return client.New(key, be)
}

// seedPlan is one price of the example catalog.
type seedPlan struct {
	Product, Plan, Features, LookupKey, Interval string
	Amount                                       int64
}

// exampleCatalog is what `make run` sells: two plans, monthly and yearly.
var exampleCatalog = []seedPlan{
	{"Starter", "starter", "projects", "starter_monthly", "month", 900},
	{"Starter", "starter", "projects", "starter_yearly", "year", 9000},
	{"Pro", "pro", "projects,sso,priority_support", "pro_monthly", "month", 2900},
	{"Pro", "pro", "projects,sso,priority_support", "pro_yearly", "year", 29000},
}

// seedCatalog makes sure every price of the example catalog exists with its
// lookup key, through Stripe's own API (so it works against Stripe's test
// mode too), and returns the lookup keys in display order. Running it again
// creates nothing: existing lookup keys are kept, and creations carry
// idempotency keys.
func seedCatalog(ctx context.Context, sc *client.API) ([]string, error) {
	keys := make([]string, 0, len(exampleCatalog))
	for _, p := range exampleCatalog {
		keys = append(keys, p.LookupKey)
	}
	lp := &stripe.PriceListParams{LookupKeys: stripe.StringSlice(keys)}
	lp.Context = ctx
	lp.AddExpand("data.product")
	have := map[string]bool{}
	productIDs := map[string]string{} // plan -> product id
	it := sc.Prices.List(lp)
	for it.Next() {
		pr := it.Price()
		have[pr.LookupKey] = true
		if pr.Product != nil && pr.Product.Metadata["plan"] != "" {
			productIDs[pr.Product.Metadata["plan"]] = pr.Product.ID
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("seed: list prices: %w", err)
	}
	for _, p := range exampleCatalog {
		if have[p.LookupKey] {
			continue
		}
		prodID, ok := productIDs[p.Plan]
		if !ok {
			pp := &stripe.ProductParams{Name: stripe.String(p.Product),
				Metadata: map[string]string{"plan": p.Plan, "feature_set": p.Features}}
			pp.Context = ctx
			pp.SetIdempotencyKey("seed-product-" + p.Plan)
			prod, err := sc.Products.New(pp)
			if err != nil {
				return nil, fmt.Errorf("seed: create product %s: %w", p.Product, err)
			}
			prodID = prod.ID
			productIDs[p.Plan] = prodID
		}
		pr := &stripe.PriceParams{Product: stripe.String(prodID), UnitAmount: stripe.Int64(p.Amount), Currency: stripe.String("usd"),
			LookupKey: stripe.String(p.LookupKey), Recurring: &stripe.PriceRecurringParams{Interval: stripe.String(p.Interval)}}
		pr.Context = ctx
		pr.SetIdempotencyKey("seed-price-" + p.LookupKey)
		if _, err := sc.Prices.New(pr); err != nil {
			return nil, fmt.Errorf("seed: create price %s: %w", p.LookupKey, err)
		}
	}
	return keys, nil
}
