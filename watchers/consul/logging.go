package consul

import (
	"bytes"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger returns an hclog.Logger for the Consul client that writes
// each line to log at warn level, so that the client's few messages (about
// unparsable environment variables) reach the agent's handler instead of
// stderr.
func newHCLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:            "consul-api",
		Level:           hclog.Warn,
		Output:          slogWriter{log: log},
		DisableTime:     true,
		IncludeLocation: false,
	})
}

// slogWriter turns each line written to it into one slog record.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		if text := strings.TrimSpace(string(line)); text != "" {
			w.log.Warn("consul client message", "message", text)
		}
	}
	return len(p), nil
}

// redactedError hides a secret inside the text of an error. It keeps the
// chain, so errors.Is and errors.As still see the original error.
type redactedError struct {
	err  error
	text string
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// redactedMark replaces the token in redacted text.
const redactedMark = "[redacted]"

// redact returns err with every occurrence of secret in its text replaced.
// The Consul client sends the token in a header, so its own errors do not
// contain it. An agent or proxy may still echo it in a response body, which
// the client copies into its error.
func redact(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	text := err.Error()
	if !strings.Contains(text, secret) {
		return err
	}
	return &redactedError{err: err, text: strings.ReplaceAll(text, secret, redactedMark)}
}

// logLimiter passes at most one log line per topic per interval and counts
// the lines it suppressed in between. It is not safe for concurrent use.
type logLimiter struct {
	interval time.Duration
	topics   map[string]*logTopic
}

type logTopic struct {
	last       time.Time
	suppressed int
}

// maxLogTopics bounds the memory of a logLimiter. Topics contain service
// names and keys, so a burst of distinct ones must not grow the map without
// limit.
const maxLogTopics = 1024

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, topics: make(map[string]*logTopic)}
}

// allow reports whether a line on topic may be logged at now and, if so,
// how many lines on it were suppressed since the last one logged.
func (l *logLimiter) allow(topic string, now time.Time) (ok bool, suppressed int) {
	t := l.topics[topic]
	if t == nil {
		if len(l.topics) >= maxLogTopics {
			clear(l.topics)
		}
		l.topics[topic] = &logTopic{last: now}
		return true, 0
	}
	if now.Sub(t.last) < l.interval {
		t.suppressed++
		return false, 0
	}
	suppressed = t.suppressed
	t.last, t.suppressed = now, 0
	return true, suppressed
}
