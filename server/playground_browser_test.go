package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/chromedp/cdproto/audits"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromiumPath is the browser the playground test drives; .ci/run installs
// it.
const chromiumPath = "/usr/bin/chromium"

// playgroundTokenKey is where the page keeps the token (sessionStorage).
const playgroundTokenKey = "billing.playground.token"

// cspListener records the page's CSP violations. Chrome runs a script added
// with Page.addScriptToEvaluateOnNewDocument whatever the page's CSP says.
const cspListener = `window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
	window.__cspViolations.push(e.effectiveDirective + " blocked " + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" + e.lineNumber);
});`

// browserLog collects what the page did: console messages, requests, CSP
// reports. The chromedp iterators fill it from their own goroutines.
type browserLog struct {
	mu        sync.Mutex
	console   []chromedp.ConsoleMessage
	requests  []string
	cspIssues []string
}

func (b *browserLog) add(f func(*browserLog)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func (b *browserLog) snapshot() (console []chromedp.ConsoleMessage, requests, cspIssues []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), b.console...), append([]string(nil), b.requests...), append([]string(nil), b.cspIssues...)
}

// TestPlaygroundInBrowser drives the embedded GraphiQL playground in a real
// Chromium: a token typed in the token bar authenticates a query over HTTP
// and a subscription over the websocket, which shows a billing event that a
// Stripe webhook causes. The page must run under its strict CSP without a
// violation or a console error, and ask nothing of another host.
func TestPlaygroundInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: drives a browser process")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing in CI (.ci/run installs Chromium): %v", chromiumPath, err)
		}
		t.Skipf("skipping the browser test: %s not found (apt-get install chromium to run it)", chromiumPath)
	}

	s := startServer(t, testenv.SQLite(t), withStripe(testenv.StripeMock(t), nil))
	base, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	token := s.token(t, "alice", false)
	workspace := s.createWorkspace(t, token, "Playground")

	profile := t.TempDir() // removed after the browser has exited (cleanups run last first)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// The first Run starts the browser; it must not have a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}

	var seen browserLog
	console := chromedp.Console(ctx)
	requests := chromedp.Events(ctx, network.RequestWillBeSent)
	sockets := chromedp.Events(ctx, network.WebSocketCreated)
	issues := chromedp.Events(ctx, audits.IssueAdded)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			seen.add(func(b *browserLog) { b.console = append(b.console, m) })
		}
	}()
	go func() {
		for ev, err := range requests {
			if err != nil {
				return
			}
			seen.add(func(b *browserLog) { b.requests = append(b.requests, ev.Request.URL) })
		}
	}()
	go func() {
		for ev, err := range sockets {
			if err != nil {
				return
			}
			seen.add(func(b *browserLog) { b.requests = append(b.requests, ev.URL) })
		}
	}()
	go func() {
		for ev, err := range issues {
			if err != nil {
				return
			}
			if ev.Issue != nil && ev.Issue.Code == audits.InspectorIssueCodeContentSecurityPolicyIssue {
				detail, _ := json.Marshal(ev.Issue.Details)
				seen.add(func(b *browserLog) { b.cspIssues = append(b.cspIssues, string(detail)) })
			}
		}
	}()
	if _, err := chromedp.Call(ctx, audits.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("Audits.enable: %v", err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener}); err != nil {
		t.Fatalf("add the CSP listener: %v", err)
	}

	step := func(name string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(sctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	// waitFor evaluates expr until it returns a string containing want.
	// (chromedp.Poll compiles its predicate with new Function, which the
	// page's CSP rightly refuses, so poll from here.)
	waitFor := func(what, expr, want string, within time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			got := eval(expr)
			if strings.Contains(got, want) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no %q after %s; got:\n%s", what, want, within, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	const (
		queryEditor = `document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror`
		response    = `(document.querySelector(".graphiql-response") || {innerText: ""}).innerText`
	)
	// setQuery replaces the query editor's text, as typing would, and waits
	// until GraphiQL has parsed it (it does so 100ms after the last edit;
	// running before that would send the previous operation's name).
	setQuery := func(q string) {
		t.Helper()
		quoted, _ := json.Marshal(q)
		eval(fmt.Sprintf(`(%s.setValue(%s), "")`, queryEditor, quoted))
		waitFor("GraphiQL parses the query",
			fmt.Sprintf(`((d) => d && d.loc && d.loc.source.body === %s ? "parsed" : "")(%s.documentAST)`, quoted, queryEditor),
			"parsed", 5*time.Second)
	}

	step("open the playground", 30*time.Second,
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS(".graphiql-query-editor .CodeMirror")),
		chromedp.WaitVisible(chromedp.CSS(".graphiql-execute-button")),
	)

	// The token bar: typing a token stores it for this tab and rebuilds the
	// fetcher, which the status line reports.
	step("type the token", 20*time.Second, chromedp.SendKeys(chromedp.CSS("#token"), token))
	waitFor("token status", `document.getElementById("token-status").textContent`, "signed in as alice", 10*time.Second)
	if got := eval(`sessionStorage.getItem("` + playgroundTokenKey + `") || ""`); got != token {
		t.Fatalf("sessionStorage %s = %q, want the token", playgroundTokenKey, got)
	}
	if got := eval(`localStorage.length ? Object.keys(localStorage).filter((k) => localStorage.getItem(k).includes("` + token[len(token)-16:] + `")).join(",") : ""`); got != "" {
		t.Fatalf("the token leaked into localStorage under %s", got)
	}

	// A query over HTTP with the Authorization header.
	setQuery(`{ me { id } }`)
	step("run the query", 10*time.Second, chromedp.Click(chromedp.CSS(".graphiql-execute-button")))
	waitFor("query result", response, `"id": "alice"`, 15*time.Second)

	// GraphiQL's dialogs lock the page's scroll with a <style> element that
	// they add at run time: the page's nonce must let it apply under
	// style-src without 'unsafe-inline'.
	step("open the settings dialog", 10*time.Second,
		chromedp.Click(chromedp.CSS(`button[aria-label="Open settings dialog"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[role="dialog"]`)),
	)
	waitFor("the dialog's scroll lock", `getComputedStyle(document.body).overflow`, "hidden", 5*time.Second)
	step("close the settings dialog", 10*time.Second,
		chromedp.KeyEvent(kb.Escape),
		chromedp.WaitNotPresent(chromedp.CSS(`[role="dialog"]`)),
	)

	// A subscription over the websocket, authenticated by connection_init.
	setQuery(fmt.Sprintf(`subscription { billingEvents(workspaceId: %q) { eventId type } }`, workspace))
	step("start the subscription", 10*time.Second, chromedp.Click(chromedp.CSS(".graphiql-execute-button")))
	waitSubscribers(t, s, 1, 15*time.Second)

	obj := stripefake.PaymentIntentJSON(fmt.Sprintf("pi_playground_%d", time.Now().UnixNano()), "succeeded", 2500, "usd",
		map[string]string{"workspace_id": workspace, "user_id": "alice", "purpose": "credits_pack"})
	var event struct{ ID string }
	if err := json.Unmarshal([]byte(sendStripeEvent(t, s, "payment_intent.succeeded", obj, time.Now())), &event); err != nil || event.ID == "" {
		t.Fatalf("the webhook payload has no event id: %v", err)
	}
	shown := waitFor("subscription event", response, event.ID, 20*time.Second)
	if !strings.Contains(shown, "payment_intent.succeeded") {
		t.Errorf("the result pane shows the event id but not its type:\n%s", shown)
	}

	dir := os.Getenv("PLAYGROUND_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	cancel()
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(dir, "playground.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	// The execute button stops a running subscription.
	step("stop the subscription", 10*time.Second, chromedp.Click(chromedp.CSS(".graphiql-execute-button")))
	waitSubscribers(t, s, 0, 15*time.Second)

	if v := eval(`JSON.stringify(window.__cspViolations || ["the CSP listener did not run"])`); v != "[]" {
		t.Errorf("CSP violations reported by the page: %s", v)
	}
	messages, urls, cspIssues := seen.snapshot()
	for _, issue := range cspIssues {
		t.Errorf("CSP issue: %s", issue)
	}
	for _, m := range messages {
		switch {
		case m.Type == chromedp.ConsoleError || m.IsException():
			t.Errorf("console %s (%s:%d): %s", m.Type, m.URL, m.Line+1, m.Text)
		case m.Type == chromedp.ConsoleWarning:
			t.Logf("console warning: %s", m.Text)
		}
	}
	if len(urls) == 0 {
		t.Fatal("no network request was recorded")
	}
	sawSocket := false
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Host != base.Host || (u.Scheme != "http" && u.Scheme != "ws") {
			t.Errorf("request to %s: every request must go to the test server %s", raw, base.Host)
		}
		sawSocket = sawSocket || (err == nil && u.Scheme == "ws" && u.Path == "/graphql")
	}
	if !sawSocket {
		t.Errorf("no websocket to /graphql among the requests: %v", urls)
	}
}

// waitSubscribers waits until s's event bus has want local subscribers.
func waitSubscribers(t *testing.T, s *testServer, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.Bus.Subscribers() != want {
		if time.Now().After(deadline) {
			t.Fatalf("bus subscribers = %d after %s, want %d", s.Bus.Subscribers(), within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
