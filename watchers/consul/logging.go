package consul

import (
	"bytes"
	"log/slog"
	"strings"

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
