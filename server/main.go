// Command server runs the billing API. Subcommands:
//
//	server [serve]                                  start the API
//	server token --sub USER [--email E] [--admin]   mint a development JWT
//	server healthcheck                              exit 0 when /readyz answers 200 (for containers)
//	server trigger EVENT_TYPE --workspace ID        send the local server a signed test webhook (development)
//	server sandbox [--seed]                         run the offline Stripe sandbox (development and tests)
//	server sandbox advance DURATION                 move the sandbox's clock forward (e.g. 720h)
//	server sandbox seed                             create the example catalog in the sandbox or Stripe test mode
//	server scenarios [NAME...]                      run scripted billing lifecycles against a fresh sandbox (make scenarios)
//
// Configuration comes from the environment (see README.md); nothing below
// this package reads it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		os.Exit(1)
	}
}

// run dispatches to a subcommand and returns its error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, getenv, stdout, stderr)
	case "token":
		return mintToken(args, getenv, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "trigger":
		return trigger(ctx, args, getenv, stdout, stderr)
	case "sandbox":
		return runSandbox(ctx, args, getenv, stdout, stderr)
	case "scenarios":
		return runScenarios(ctx, args, stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q (want serve, token, healthcheck, trigger, sandbox or scenarios)", cmd)
	}
}

// serve starts the API and blocks until ctx is cancelled, then shuts down
// gracefully.
func serve(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	m := NewMain(cfg, newLogger(cfg, stderr))
	if err := m.Open(ctx); err != nil {
		_ = m.Close()
		return err
	}
	printWelcome(stdout, m)
	// Start-up (migrations, the schema, the first connections) leaves
	// garbage that the runtime would hand back to the OS only minutes
	// later; an idle server should not hold it.
	debug.FreeOSMemory()
	<-ctx.Done()
	return m.Close()
}

// healthcheck asks the local server's /readyz and returns an error unless
// it answers 200. Container images have no curl; this is their probe.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	addr := getenv("HTTP_ADDR")
	if addr == "" {
		addr = ":8000"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %d", res.StatusCode)
	}
	return nil
}
