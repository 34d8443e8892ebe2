package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// getAdminJSON fetches path from an admin server and decodes the body into
// v. It returns the status code, or 0 when the request failed.
func getAdminJSON(t *testing.T, adminAddr, path string, v any) int {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode body: %v", path, err)
	}
	return resp.StatusCode
}

// waitForReady polls /healthz/ready until it returns 200 with status
// ready, because a process offers no event for it.
func waitForReady(t *testing.T, adminAddr string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var code int
	var body struct {
		Status string `json:"status"`
	}
	for {
		code = getAdminJSON(t, adminAddr, "/healthz/ready", &body)
		if code == http.StatusOK && body.Status == "ready" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness = %d %q after %s, want 200 ready", code, body.Status, waitTimeout)
		}
		time.Sleep(50 * time.Millisecond) // polling readiness; nothing to await
	}
}
