// Command server runs the billing API. Subcommands:
//
//	server [serve]                                  start the API
//	server token --sub USER [--email E] [--admin]   mint a development JWT
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
	"os"
	"os/signal"
	"syscall"
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
	default:
		return fmt.Errorf("unknown command %q (want serve or token)", cmd)
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
	<-ctx.Done()
	return m.Close()
}
