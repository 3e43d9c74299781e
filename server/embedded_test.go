package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/internal/database"
	"billingapi/internal/testenv"
)

// buildServer compiles this command into a temporary folder.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "billing-server")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServerProcess runs the built binary bin with env and returns a
// testServer for its URL and the process, which is killed at the test's
// end. Its logs (stderr; stdout is the welcome banner) are scanned for
// secrets with the others', and shown, their last 20,000 bytes, when the
// test fails.
func startServerProcess(t *testing.T, bin string, env map[string]string) (*testServer, *exec.Cmd) {
	t.Helper()
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = t.TempDir()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	collectLogs(logs, cfg)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			text := logs.String()
			if len(text) > 20000 {
				text = "...\n" + text[len(text)-20000:]
			}
			t.Logf("server process %d logs:\n%s", cmd.Process.Pid, text)
		}
	})
	return &testServer{Main: &Main{Config: cfg}, URL: waitForURL(t, stdout, &bytes.Buffer{})}, cmd
}

// TestEmbeddedDefaults runs the real binary the way `make run` does, with
// an empty environment (only HTTP_ADDR, so that the test does not fight a
// developer's server for :8000): embedded SQLite under ./data, embedded
// Redis, the development JWT secret. A token minted by the `token`
// subcommand gets `{ me { id } }` back, and SIGTERM shuts it down cleanly.
func TestEmbeddedDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the server binary")
	}
	bin := buildServer(t)
	dir := t.TempDir()

	tokenCmd := exec.Command(bin, "token", "--sub", "embedded-user", "--email", "e@example.com")
	tokenCmd.Env = []string{}
	tokenCmd.Dir = dir
	tokOut, err := tokenCmd.Output()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	token := strings.TrimSpace(string(tokOut))

	cmd := exec.Command(bin)
	cmd.Env = []string{"HTTP_ADDR=127.0.0.1:0"}
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	base := waitForURL(t, stdout, &stderr)
	body := strings.NewReader(`{"query":"{ me { id } }"}`)
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Data struct{ Me struct{ ID string } }
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if out.Data.Me.ID != "embedded-user" {
		t.Fatalf("me.id = %q, want embedded-user", out.Data.Me.ID)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "billing.db")); err != nil {
		t.Fatalf("embedded database not created under ./data: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not stop within 20s of SIGTERM")
	}
}

var listeningLine = regexp.MustCompile(`listening on (http://\S+)`)

// waitForURL reads the server's stdout until it prints its URL.
func waitForURL(t *testing.T, stdout interface{ Read([]byte) (int, error) }, stderr *bytes.Buffer) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listeningLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case u := <-found:
		return u
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not print its URL within 60s; stderr:\n%s", stderr.String())
		return ""
	}
}

func TestTokenCommand(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	t.Run("MintsATokenTheServerAccepts", func(t *testing.T) {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"token", "--sub", "u1", "--admin"}, env(nil), &out, &errb); err != nil {
			t.Fatal(err)
		}
		verifier, err := auth.NewVerifier(auth.VerifierConfig{HS256Secret: []byte(DevJWTSecret)})
		if err != nil {
			t.Fatal(err)
		}
		v, err := verifier.Verify(strings.TrimSpace(out.String()))
		if err != nil || v.UserID != "u1" || !v.Admin {
			t.Fatalf("viewer = %+v, err = %v", v, err)
		}
	})
	t.Run("RefusedInProduction", func(t *testing.T) {
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{"token", "--sub", "u1"}, env(validProductionEnv()), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "production") || out.Len() != 0 {
			t.Fatalf("err = %v, out = %q; want a refusal naming production", err, out.String())
		}
	})
	t.Run("SubIsRequired", func(t *testing.T) {
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{"token"}, env(nil), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "--sub") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("UnknownCommand", func(t *testing.T) {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"frobnicate"}, env(nil), &out, &errb); err == nil {
			t.Fatal("unknown command accepted")
		}
	})
}

func TestHealthcheckCommand(t *testing.T) {
	s := startServer(t, testenv.SQLite(t), nil)
	addr := strings.TrimPrefix(s.URL, "http://")
	env := func(k string) string {
		if k == "HTTP_ADDR" {
			return addr
		}
		return ""
	}
	if err := run(context.Background(), []string{"healthcheck"}, env, io.Discard, io.Discard); err != nil {
		t.Fatalf("healthcheck of a ready server: %v", err)
	}
	closed := func(k string) string {
		if k == "HTTP_ADDR" {
			return "127.0.0.1:1"
		}
		return ""
	}
	if err := run(context.Background(), []string{"healthcheck"}, closed, io.Discard, io.Discard); err == nil {
		t.Fatal("healthcheck of a closed port succeeded")
	}
}

// TestTwoProcessesStartTogetherOnAnEmptyDatabase starts two server
// processes at the same moment against an empty PostgreSQL database: both
// come up, and each migration is applied once.
func TestTwoProcessesStartTogetherOnAnEmptyDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs two server processes")
	}
	bin := buildServer(t)
	dbURL := testenv.Postgres(t)
	redisURL, prefix := testenv.Redis(t)
	type proc struct {
		cmd    *exec.Cmd
		stdout io.Reader
		stderr *bytes.Buffer
	}
	procs := make([]proc, 2)
	for i := range procs {
		cmd := exec.Command(bin)
		cmd.Env = []string{"HTTP_ADDR=127.0.0.1:0", "DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL, "REDIS_KEY_PREFIX=" + prefix}
		cmd.Dir = t.TempDir()
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		procs[i] = proc{cmd: cmd, stdout: out, stderr: &bytes.Buffer{}}
		cmd.Stderr = procs[i].stderr
	}
	for _, p := range procs {
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	}
	for _, p := range procs {
		base := waitForURL(t, p.stdout, p.stderr)
		res, err := http.Get(base + "/readyz")
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("%s/readyz: %v %v", base, err, res)
		}
		res.Body.Close()
	}
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, versions int
	if err := db.QueryRow("SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	dir, _ := database.Migrations()
	files, _ := dir.Files()
	if rows != len(files) || versions != len(files) {
		t.Fatalf("schema_migrations: %d rows, %d versions; want each of %d migrations once", rows, versions, len(files))
	}
}
