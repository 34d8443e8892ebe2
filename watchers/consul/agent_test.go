package consul

import (
	"bytes"

	"fmt"
	"net"
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

// consulVersion is the Consul release that scripts/consul.sh builds.
const consulVersion = "1.14.11"

// consulBinary returns the path of the Consul binary: TETHER_CONSUL_BIN,
// else the cache path of scripts/consul.sh. It returns "" when neither
// exists.
func consulBinary() string {
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
	bin := filepath.Join(cache, "consul-"+consulVersion)
	if _, err := os.Stat(bin); err != nil {
		return ""
	}
	return bin
}

// testConsul is a Consul agent in dev mode on loopback ports chosen when
// it is created. It can be stopped and started again on the same ports; a
// dev agent keeps no data, so a restart starts from an empty store with low
// indexes.
type testConsul struct {
	bin   string
	dir   string
	ports map[string]int
	addr  string

	// starts counts the calls to start; each start gets a data dir of its
	// own, because an agent restores the services registered through it
	// from its data dir, even in dev mode.
	starts int
	cmd    *exec.Cmd
	output *lockedBuffer
	// exited is closed by the goroutine that waits for cmd.
	exited chan struct{}
}

// agentPortFlags are the port flags of consul agent, each set to a free
// port. The gRPC TLS port is turned off instead.
var agentPortFlags = []string{"http", "dns", "grpc", "serf-lan", "serf-wan", "server"}

// newTestConsul returns a stopped agent with free ports, or skips the test
// when the binary is missing.
func newTestConsul(t testing.TB) *testConsul {
	t.Helper()
	bin := consulBinary()
	if bin == "" {
		t.Skip("consul binary not found: run scripts/consul.sh to build it, or set TETHER_CONSUL_BIN")
	}
	c := &testConsul{bin: bin, ports: make(map[string]int)}
	dir, err := os.MkdirTemp("", "tether-consul-")
	if err != nil {
		t.Fatalf("create consul data dir: %v", err)
	}
	c.dir = dir
	for _, name := range agentPortFlags {
		c.ports[name] = freePort(t)
	}
	c.addr = "127.0.0.1:" + strconv.Itoa(c.ports["http"])
	return c
}

// startTestConsul starts an agent of its own for one test and stops it when
// the test ends.
func startTestConsul(t *testing.T) *testConsul {
	t.Helper()
	c := newTestConsul(t)
	t.Cleanup(c.close)
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *testConsul) start() error {
	c.starts++
	dataDir := filepath.Join(c.dir, strconv.Itoa(c.starts))
	args := []string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-data-dir", dataDir, "-node", "tether-test", "-log-level", "warn",
		"-grpc-tls-port", "-1", "-https-port", "-1"}
	for _, name := range agentPortFlags {
		args = append(args, "-"+name+"-port", strconv.Itoa(c.ports[name]))
	}
	c.output = &lockedBuffer{}
	c.cmd = exec.Command(c.bin, args...)
	c.cmd.Stdout = c.output
	c.cmd.Stderr = c.output
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start consul agent %s: %w", c.bin, err)
	}
	c.exited = make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	return c.waitForLeader()
}

// waitForLeader polls the agent until it reports a leader, because Consul
// offers no event for it.
func (c *testConsul) waitForLeader() error {
	client := c.client()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return fmt.Errorf("consul agent exited during start: %s", c.output.String())
		case <-time.After(50 * time.Millisecond):
		}
		if leader, err := client.Status().Leader(); err == nil && leader != "" {
			return nil
		}
	}
	return fmt.Errorf("consul agent elected no leader within %v: %s", waitTimeout, c.output.String())
}

// stop ends the agent and waits for the process to exit.
func (c *testConsul) stop() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
}

func (c *testConsul) close() {
	c.stop()
	_ = os.RemoveAll(c.dir)
}

// client returns a Consul client for the agent that reads no environment.
func (c *testConsul) client() *api.Client {
	client, err := api.NewClient(&api.Config{Address: c.addr, Scheme: "http"})
	if err != nil {
		panic(fmt.Sprintf("create consul client for %s: %v", c.addr, err))
	}
	return client
}

// sharedAgent is one agent for the tests that do not restart it, started
// by the first test that asks and stopped by TestMain.
var sharedAgent struct {
	once  sync.Once
	agent *testConsul
	err   error
}

// sharedConsul returns the shared agent, or skips the test when the binary
// is missing.
func sharedConsul(t *testing.T) *testConsul {
	t.Helper()
	if consulBinary() == "" {
		t.Skip("consul binary not found: run scripts/consul.sh to build it, or set TETHER_CONSUL_BIN")
	}
	sharedAgent.once.Do(func() {
		sharedAgent.agent = newTestConsul(t)
		sharedAgent.err = sharedAgent.agent.start()
	})
	if sharedAgent.err != nil {
		t.Fatal(sharedAgent.err)
	}
	return sharedAgent.agent
}

func stopSharedConsul() {
	if sharedAgent.agent != nil {
		sharedAgent.agent.close()
	}
}

// freePort returns a loopback port that was free for both TCP and UDP a
// moment ago, because Consul's DNS and Serf ports use both.
func freePort(t testing.TB) int {
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
	t.Fatal("find a free port: no port was free for both TCP and UDP")
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
