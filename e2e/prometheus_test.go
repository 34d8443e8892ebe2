package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// lookTool finds a program the tests need. CI installs every one of them
// and sets TETHER_REQUIRE_TOOLS=1, so a missing tool fails there instead
// of skipping.
func lookTool(t *testing.T, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("TETHER_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s not found; install it with: %s", name, install)
	}
	t.Skipf("%s not found; install it with: %s", name, install)
	return ""
}

func TestMetricsPassPromtool(t *testing.T) {
	promtool := lookTool(t, "promtool", "apt-get install prometheus")
	e := startEnv(t, envOptions{})
	// One request opens an xDS stream, so the stream metrics have values.
	call(t, e.dial("xds:///reviews", "metrics"), 1)

	metrics := e.getText("/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewBufferString(metrics)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestPrometheusScrapesAgent(t *testing.T) {
	prom := lookTool(t, "prometheus", "apt-get install prometheus")
	e := startEnv(t, envOptions{})
	call(t, e.dial("xds:///reviews", "scraped"), 5)

	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: tether
    static_configs:
      - targets: [%q]
`, e.agent.AdminAddr())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	webAddr := freeAddr(t)
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+webAddr)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})

	for query, want := range map[string]string{
		`up{job="tether"}`: "1",
		`tether_xds_streams{job="tether",kind="ads-sotw"}`:  "1",
		`tether_agent_ready{job="tether"}`:                  "1",
		`tether_store_invalid_documents{job="tether"}`:      "0",
		`sum(tether_xds_acks_total{job="tether"}) > bool 0`: "1",
	} {
		got := waitForQuery(t, webAddr, query, want)
		if got != want {
			t.Errorf("prometheus query %s = %q, want %q", query, got, want)
		}
	}
}

// waitForQuery runs an instant query until it returns want or the wait
// ends, and returns the last value seen.
func waitForQuery(t *testing.T, addr, query, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		last = instantQuery(addr, query)
		if last == want {
			return last
		}
		time.Sleep(200 * time.Millisecond) // Prometheus scrapes once a second; nothing to await
	}
	return last
}

func instantQuery(addr, query string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Data.Result) != 1 {
		return ""
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	return s
}
