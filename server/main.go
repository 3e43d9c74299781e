// Command server runs the billing API and its development tools: the
// commands are listed in commands below, and by `server -h`.
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
	"strings"
	"syscall"
	"time"
)

// commands are the subcommands, in the order `server -h` lists them.
var commands = []struct{ name, args, about string }{
	{"serve", "", "start the API (the command when none is named)"},
	{"token", "--sub USER [--email E] [--name N] [--admin] [--ttl D]", "mint a development JWT"},
	{"healthcheck", "", "exit 0 when /readyz answers 200 (for containers)"},
	{"trigger", "EVENT_TYPE --workspace ID [--url URL] [--customer cus_...] [--plan NAME]", "send the local server a signed test webhook (development)"},
	{"sandbox", "[--seed]", "run the offline Stripe sandbox (development and tests)"},
	{"sandbox advance", "DURATION", "move the sandbox's clock forward (e.g. 720h)"},
	{"sandbox seed", "", "create the example catalog in the sandbox or Stripe test mode"},
	{"scenarios", "[-list] [-chaos] [NAME...]", "run scripted billing lifecycles against a fresh sandbox (make scenarios)"},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// run dispatches to a subcommand and returns its error; asking for help
// (-h, -help or --help, or `server help`) prints the usage and is no error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	switch {
	case len(args) == 1 && (isHelp(args[0]) || args[0] == "help"):
		printUsage(stderr)
		return nil
	case len(args) > 0 && args[0] != "" && args[0][0] != '-':
		cmd, args = args[0], args[1:]
	}
	err := dispatch(ctx, cmd, args, getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch cmd {
	case "serve":
		if helpOnly(args) {
			printCommandUsage(stderr, "serve", nil)
			return nil
		}
		return serve(ctx, getenv, stdout, stderr)
	case "token":
		return mintToken(args, getenv, stdout, stderr)
	case "healthcheck":
		if helpOnly(args) {
			printCommandUsage(stderr, "healthcheck", nil)
			return nil
		}
		return healthcheck(ctx, getenv)
	case "trigger":
		return trigger(ctx, args, getenv, stdout, stderr)
	case "sandbox":
		return runSandbox(ctx, args, getenv, stdout, stderr)
	case "scenarios":
		return runScenarios(ctx, args, stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q (want serve, token, healthcheck, trigger, sandbox or scenarios; server -h lists them)", cmd)
	}
}

// isHelp reports whether arg asks for help, as the flag package reads it.
func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// helpOnly reports whether args are one request for help, for the commands
// that take no flags (and ignore their arguments otherwise).
func helpOnly(args []string) bool { return len(args) == 1 && isHelp(args[0]) }

// printUsage writes the list of commands.
func printUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: server [COMMAND] [ARGUMENTS]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.about)
	}
	fmt.Fprintf(w, "\nConfiguration comes from the environment (README.md). server COMMAND -h describes one command.\n")
}

// printCommandUsage writes the usage of the named command, with fs's flags
// when it has any.
func printCommandUsage(w io.Writer, name string, fs *flag.FlagSet) {
	for _, c := range commands {
		if c.name == name {
			fmt.Fprintf(w, "usage: server %s\n\n%s\n", strings.TrimSpace(c.name+" "+c.args), c.about)
		}
	}
	hasFlags := false
	if fs != nil {
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	}
	if hasFlags {
		fmt.Fprintf(w, "\nflags:\n")
		fs.PrintDefaults()
	}
}

// newFlagSet returns the flag set of the named command: errors and the
// usage go to stderr.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printCommandUsage(stderr, name, fs) }
	return fs
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
