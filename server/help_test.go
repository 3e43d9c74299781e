package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHelp asks every command for help: each prints its usage and
// succeeds (the process exits 0), and none runs.
func TestHelp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // the usage's first line
	}{
		{[]string{"-h"}, "usage: server [COMMAND] [ARGUMENTS]"},
		{[]string{"--help"}, "usage: server [COMMAND] [ARGUMENTS]"},
		{[]string{"help"}, "usage: server [COMMAND] [ARGUMENTS]"},
		{[]string{"serve", "--help"}, "usage: server serve\n"},
		{[]string{"token", "-h"}, "usage: server token --sub USER"},
		{[]string{"healthcheck", "--help"}, "usage: server healthcheck\n"},
		{[]string{"trigger", "--help"}, "usage: server trigger EVENT_TYPE --workspace ID"},
		{[]string{"trigger", "-h"}, "usage: server trigger EVENT_TYPE --workspace ID"},
		{[]string{"sandbox", "--help"}, "usage: server sandbox [--seed]"},
		{[]string{"sandbox", "serve", "-h"}, "usage: server sandbox [--seed]"},
		{[]string{"sandbox", "advance", "--help"}, "usage: server sandbox advance DURATION"},
		{[]string{"sandbox", "seed", "-h"}, "usage: server sandbox seed\n"},
		{[]string{"scenarios", "-help"}, "usage: server scenarios [-list] [-chaos] [NAME...]"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			// The sandbox's and the server's own address, so that a command
			// that ran instead would fail rather than serve.
			env := map[string]string{"HTTP_ADDR": "127.0.0.1:1", "SANDBOX_ADDR": "127.0.0.1:1"}
			if err := run(ctx, c.args, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
				t.Fatalf("err = %v\nstderr: %s", err, stderr.String())
			}
			if !strings.HasPrefix(stderr.String(), c.want) {
				t.Errorf("stderr starts %q, want %q", firstLine(stderr.String()), c.want)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout = %q, want nothing (the command ran?)", stdout.String())
			}
		})
	}

	t.Run("TheProcessExitsZero", func(t *testing.T) {
		if testing.Short() {
			t.Skip("builds the server binary")
		}
		bin := buildServer(t)
		for _, args := range [][]string{{"--help"}, {"trigger", "--help"}} {
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "usage: server ") {
				t.Errorf("server %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})

	t.Run("AWrongFlagIsStillAnError", func(t *testing.T) {
		var stderr bytes.Buffer
		if err := run(context.Background(), []string{"trigger", "--no-such-flag"}, func(string) string { return "" }, &stderr, &stderr); err == nil {
			t.Error("trigger --no-such-flag: no error")
		}
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
