package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds cmd/tether into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tether")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/tether")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a running tether command.
type process struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *syncBuffer
	done   chan error
}

func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stdout: bufio.NewReader(out), stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(bin), p.stderr.String())
		}
	})
	return p
}

// waitForLine reads stdout until a line contains want.
func (p *process) waitForLine(t *testing.T, want string) {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		for {
			line, err := p.stdout.ReadString('\n')
			if strings.Contains(line, want) {
				found <- true
				_, _ = io.Copy(io.Discard, p.stdout)
				return
			}
			if err != nil {
				found <- false
				return
			}
		}
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("process ended before printing %q", want)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no line with %q within 60s", want)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no exit within the wait after SIGTERM")
	}
}

func run(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func readiness(t *testing.T, adminAddr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/healthz/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body.Status
}

func TestBinaryDevCallAndConfig(t *testing.T) {
	bin := buildBinary(t)
	dataDir := t.TempDir()
	etcdAddr, xdsAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	dev := startProcess(t, bin, "dev", "--data-dir", dataDir,
		"--etcd-listen-addr", etcdAddr, "--etcd-peer-addr", freeAddr(t),
		"--xds-addr", xdsAddr, "--admin-addr", adminAddr, "--drain-delay", "1s")
	dev.waitForLine(t, "Try it:")

	// The balancer picks per request, so 20 requests miss the 20% subset
	// about once in 90 runs; with 200 the chance is below 1e-19.
	out, err := run(t, bin, "call", "xds:///reviews", "-n", "200", "--xds-addr", xdsAddr)
	if err != nil {
		t.Fatalf("tether call: %v\n%s", err, out)
	}
	for _, inst := range []string{"reviews-v1", "reviews-v2", "reviews-v3"} {
		if !strings.Contains(out, inst) {
			t.Errorf("tether call output lacks %s:\n%s", inst, out)
		}
	}
	out, err = run(t, bin, "call", "xds:///reviews", "-n", "5", "-H", "end-user=jason", "--xds-addr", xdsAddr)
	if err != nil || !strings.Contains(out, "reviews-v2           5") {
		t.Errorf("tether call with end-user=jason: %v\n%s", err, out)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: reviews\nport: 9080\nroutes:\n  - backends: [{subset: v9}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, bin, "config", "apply", "-f", bad, "--etcd-endpoints", etcdAddr)
	if err == nil {
		t.Errorf("config apply of an invalid document succeeded:\n%s", out)
	}
	if !strings.Contains(out, "routes[0].backends[0].subset") {
		t.Errorf("config apply error does not name the field:\n%s", out)
	}
	out, err = run(t, bin, "config", "validate", "-f", "../docs/examples/reviews.yaml")
	if err != nil || !strings.Contains(out, "/tether/services/reviews: valid") {
		t.Errorf("config validate of the schema example: %v\n%s", err, out)
	}
	out, err = run(t, bin, "config", "get", "reviews", "--etcd-endpoints", etcdAddr)
	if err != nil || !strings.Contains(out, "subset: v3") {
		t.Errorf("config get reviews: %v\n%s", err, out)
	}

	if code, status := readiness(t, adminAddr); code != 200 || status != "ready" {
		t.Errorf("readiness = %d %s, want 200 ready", code, status)
	}
	dev.stop(t)

	cache := filepath.Join(dataDir, "last-known-good.json")
	info, err := os.Stat(cache)
	if err != nil {
		t.Fatalf("last-known-good file: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("last-known-good file mode = %o, want 600", perm)
	}

	// An agent whose etcd is unreachable serves the last-known-good state.
	adminAddr = freeAddr(t)
	agent := startProcess(t, bin, "agent", "--etcd-endpoints", freeAddr(t), "--cache-file", cache,
		"--xds-addr", freeAddr(t), "--admin-addr", adminAddr, "--drain-delay", "1s")
	deadline := time.Now().Add(waitTimeout)
	code, status := 0, ""
	for status != "degraded" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling readiness; nothing to await
		if resp, err := http.Get("http://" + adminAddr + "/healthz/live"); err == nil {
			resp.Body.Close()
			code, status = readiness(t, adminAddr)
		}
	}
	if code != 200 || status != "degraded" {
		t.Errorf("agent on the last-known-good file: readiness %d %q, want 200 degraded", code, status)
	}
	agent.stop(t)
}
