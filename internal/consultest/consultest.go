// Package consultest runs a real Consul agent in dev mode for tests, on
// loopback ports chosen at run time. The binary comes from
// scripts/consul.sh, which builds Consul once into a cache directory.
package consultest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// Version is the Consul release that scripts/consul.sh builds.
const Version = "1.14.11"

// StartTimeout bounds the wait for a started agent to elect itself leader.
const StartTimeout = 30 * time.Second

// stopTimeout bounds the wait for the agent to exit after SIGTERM, after
// which it is killed.
const stopTimeout = 10 * time.Second

// Binary returns the path of the Consul binary: TETHER_CONSUL_BIN when set,
// else consul-<Version> in the cache of scripts/consul.sh
// (${TETHER_CACHE:-$HOME/.cache/tether}) when that file exists, else "".
func Binary() string {
	if bin := os.Getenv("TETHER_CONSUL_BIN"); bin != "" {
		return bin
	}
	cache := os.Getenv("TETHER_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		cache = filepath.Join(home, ".cache", "tether")
	}
	bin := filepath.Join(cache, "consul-"+Version)
	if _, err := os.Stat(bin); err != nil {
		return ""
	}
	return bin
}

// RequireBinary returns Binary, or ends the test when there is none: it
// skips, unless TETHER_REQUIRE_TOOLS is set, in which case it fails.
func RequireBinary(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin != "" {
		return bin
	}
	const msg = "consul binary not found: run scripts/consul.sh to build it, or set TETHER_CONSUL_BIN"
	if os.Getenv("TETHER_REQUIRE_TOOLS") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Agent is a Consul agent in dev mode on loopback ports chosen by New. It
// can be stopped and started again on the same ports. A dev agent keeps no
// data, so each start begins with an empty store and low indexes.
//
// Start, Stop and Close must be called from one goroutine at a time;
// Client, Addr and Output are safe for concurrent use.
type Agent struct {
	bin   string
	dir   string
	ports map[string]int
	addr  string

	client    *api.Client
	transport *http.Transport

	// starts counts the calls to Start. Each start gets a data dir of its
	// own, because an agent restores the services registered through it
	// from its data dir, even in dev mode.
	starts int
	cmd    *exec.Cmd
	output *lockedBuffer
	// exited is closed by the goroutine that waits for cmd.
	exited chan struct{}
}

// portFlags are the port flags of consul agent, each set to a free port.
// The HTTPS and gRPC TLS ports are turned off instead.
var portFlags = []string{"http", "dns", "grpc", "serf-lan", "serf-wan", "server"}

// New returns a stopped agent with free ports and a data directory, or
// ends the test as RequireBinary does when the binary is missing. The
// caller calls Close when done; StartAgent does that through t.Cleanup.
func New(t testing.TB) *Agent {
	t.Helper()
	a := &Agent{bin: RequireBinary(t), ports: make(map[string]int), output: &lockedBuffer{}}
	dir, err := os.MkdirTemp("", "tether-consul-")
	if err != nil {
		t.Fatalf("create consul data dir: %v", err)
	}
	a.dir = dir
	for _, name := range portFlags {
		a.ports[name] = FreePort(t)
	}
	a.addr = "127.0.0.1:" + strconv.Itoa(a.ports["http"])

	a.transport = http.DefaultTransport.(*http.Transport).Clone()
	a.client, err = api.NewClient(&api.Config{Address: a.addr, Scheme: "http", Transport: a.transport})
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("create consul client for %s: %v", a.addr, err)
	}
	return a
}

// StartAgent returns a started agent that is closed when the test ends.
func StartAgent(t testing.TB) *Agent {
	t.Helper()
	a := New(t)
	t.Cleanup(a.Close)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	return a
}

// Start runs the agent and waits until it has elected itself leader, at
// most StartTimeout. The error carries the agent's output.
func (a *Agent) Start() error {
	a.starts++
	args := []string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-data-dir", filepath.Join(a.dir, strconv.Itoa(a.starts)),
		"-node", "tether-test", "-log-level", "warn",
		"-grpc-tls-port", "-1", "-https-port", "-1"}
	for _, name := range portFlags {
		args = append(args, "-"+name+"-port", strconv.Itoa(a.ports[name]))
	}

	a.cmd = exec.Command(a.bin, args...)
	a.cmd.Stdout = a.output
	a.cmd.Stderr = a.output
	if err := a.cmd.Start(); err != nil {
		a.cmd = nil
		return fmt.Errorf("start consul agent %s: %w", a.bin, err)
	}
	exited := make(chan struct{})
	a.exited = exited
	cmd := a.cmd
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return a.waitForLeader()
}

// waitForLeader polls the agent until it reports a leader, because Consul
// offers no event for it.
func (a *Agent) waitForLeader() error {
	deadline := time.Now().Add(StartTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-a.exited:
			return fmt.Errorf("consul agent exited during start: %s", a.output.String())
		case <-tick.C:
		}
		if leader, err := a.client.Status().Leader(); err == nil && leader != "" {
			return nil
		}
	}
	return fmt.Errorf("consul agent elected no leader within %v: %s", StartTimeout, a.output.String())
}

// Stop sends SIGTERM to the agent and waits for it to exit, killing it
// after 10 seconds. Stop on a stopped agent does nothing.
func (a *Agent) Stop() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(stopTimeout):
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
	a.cmd = nil
	a.transport.CloseIdleConnections()
}

// Close stops the agent and removes its data directory.
func (a *Agent) Close() {
	a.Stop()
	_ = os.RemoveAll(a.dir)
}

// Client returns a client for the agent's HTTP API. Fields other than the
// address and scheme come from api.DefaultConfig, which reads the CONSUL_*
// environment variables. A dev agent has ACLs off, so it ignores a token.
func (a *Agent) Client() *api.Client { return a.client }

// Addr returns the agent's HTTP address as 127.0.0.1:port.
func (a *Agent) Addr() string { return a.addr }

// Output returns everything the agent process wrote so far, for failure
// messages.
func (a *Agent) Output() string { return a.output.String() }

// FreePort returns a loopback port that was free for both TCP and UDP a
// moment ago, because Consul's DNS and Serf ports use both. Another
// process may take it before the caller binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = ln.Close()
		if err == nil {
			_ = udp.Close()
			return port
		}
	}
	t.Fatal("find a free port: no port was free for both TCP and UDP in 20 tries")
	return 0
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
