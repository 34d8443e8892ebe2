package telemetry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"go.uber.org/zap"
)

func TestZapLoggerWritesThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	z := ZapLogger(log, "etcd-client").With(zap.String("endpoint", "127.0.0.1:2379"))

	z.Debug("dropped below the handler level")
	z.Warn("retrying", zap.Int("attempt", 3), zap.Error(errTest("refused")))

	var entry map[string]any
	if err := json.Unmarshal(buf.Bytes(), &entry); err != nil {
		t.Fatalf("want exactly one JSON line, got %q: %v", buf.String(), err)
	}
	want := map[string]any{
		"level": "WARN", "msg": "retrying", "component": "etcd-client",
		"endpoint": "127.0.0.1:2379", "attempt": float64(3), "error": "refused",
	}
	for k, v := range want {
		if entry[k] != v {
			t.Errorf("%s = %v, want %v", k, entry[k], v)
		}
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }
