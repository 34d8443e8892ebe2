package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-mesh/tether/demo"
)

// memorySettle is how long the agent process runs before its memory and
// CPU are read, so that start-up garbage is collected.
const memorySettle = 5 * time.Second

// idleWindow is the span over which idle CPU use is measured.
const idleWindow = 10 * time.Second

// BenchmarkAgentMemory runs the tether binary as its own process, so that
// its figures cover the agent alone. It reports RSS with an empty mesh
// (idle), CPU in millicores while idle, RSS with the reference mesh, and
// RSS with the reference mesh and 100 grpc-go clients. The clients run in
// the benchmark process.
//
// It measures two builds: the default one, and the slim one for sidecars
// and VMs (go build -tags slim), which leaves out dev and call.
func BenchmarkAgentMemory(b *testing.B) {
	for _, build := range []struct{ name, tags string }{{"full", ""}, {"slim", "slim"}} {
		b.Run("build="+build.name, func(b *testing.B) {
			bin := filepath.Join(b.TempDir(), "tether")
			out, err := exec.Command("go", "build", "-tags", build.tags, "-o", bin, "../cmd/tether").CombinedOutput()
			if err != nil {
				b.Fatalf("go build: %v\n%s", err, out)
			}
			benchmarkAgentMemory(b, bin)
		})
	}
}

func benchmarkAgentMemory(b *testing.B, bin string) {
	for b.Loop() {
		idleEtcd, _ := startEtcd(b)
		idle := startAgentProcess(b, bin, demo.ClientURL(idleEtcd))
		idleRSS := rssOf(b, idle.pid)
		millicores := cpuMillicores(b, idle.pid, idleWindow)

		srv, cli := startEtcd(b)
		m := refMesh{services: referenceServices, real: startBackends(b, endpointsPerService)}
		if _, err := m.write(context.Background(), cli); err != nil {
			b.Fatal(err)
		}
		loaded := startAgentProcess(b, bin, demo.ClientURL(srv))
		meshRSS := rssOf(b, loaded.pid)
		dialClients(b, loaded.xdsAddr, serviceName(0), "mem", 100)
		time.Sleep(memorySettle) // letting the process settle; nothing to await
		clientsRSS := rssOf(b, loaded.pid)

		b.ReportMetric(idleRSS, "idle-rss-MiB")
		b.ReportMetric(millicores, "idle-millicores")
		b.ReportMetric(meshRSS, "mesh-rss-MiB")
		b.ReportMetric(clientsRSS, "mesh-100-clients-rss-MiB")
		b.Logf("agent process: idle %.1f MiB and %.2f millicores; reference mesh %.1f MiB; with 100 clients %.1f MiB "+
			"(targets: idle under 30 MiB and about 1 millicore, under 80 MiB with the mesh and 100 proxies)",
			idleRSS, millicores, meshRSS, clientsRSS)
	}
}

type agentProcess struct {
	pid     int
	xdsAddr string
}

// startAgentProcess runs `tether agent` on etcdURL and waits until it is
// ready and has settled. The process is killed when b ends.
func startAgentProcess(b *testing.B, bin, etcdURL string) agentProcess {
	b.Helper()
	xdsAddr, adminAddr := freeAddr(b), freeAddr(b)
	cmd := exec.Command(bin, "agent", "--etcd-endpoints", etcdURL, "--xds-addr", xdsAddr,
		"--admin-addr", adminAddr, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := poll(waitTimeout, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/healthz/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ready {
		b.Fatalf("agent at %s not ready within %s", adminAddr, waitTimeout)
	}
	time.Sleep(memorySettle) // letting the process settle; nothing to await
	return agentProcess{pid: cmd.Process.Pid, xdsAddr: xdsAddr}
}

// rssOf returns the VmRSS of a process in MiB.
func rssOf(b *testing.B, pid int) float64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// cpuMillicores returns the CPU the process used over window, in
// thousandths of a core.
func cpuMillicores(b *testing.B, pid int, window time.Duration) float64 {
	b.Helper()
	before := cpuTicks(b, pid)
	time.Sleep(window) // measuring an idle period; nothing to await
	after := cpuTicks(b, pid)
	// Linux reports utime and stime in clock ticks of 1/100 s (USER_HZ).
	seconds := float64(after-before) / 100
	return seconds / window.Seconds() * 1000
}

func cpuTicks(b *testing.B, pid int) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parse /proc/%d/stat: %v %v", pid, err1, err2)
	}
	return utime + stime
}
