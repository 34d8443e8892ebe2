// Package telemetry holds the agent's logging and metrics plumbing that
// several packages share.
package telemetry

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ZapLogger returns a zap logger that writes through log, so that the etcd
// client and the embedded etcd server log into the agent's own handler,
// with the agent's format and level. Entries carry component=<name>.
func ZapLogger(log *slog.Logger, name string) *zap.Logger {
	return zap.New(&zapCore{log: log.With("component", name)})
}

// zapCore is a zapcore.Core that forwards entries to slog.
type zapCore struct {
	log   *slog.Logger
	attrs []any
}

func (c *zapCore) Enabled(level zapcore.Level) bool {
	return c.log.Enabled(context.Background(), slogLevel(level))
}

func (c *zapCore) With(fields []zapcore.Field) zapcore.Core {
	return &zapCore{log: c.log, attrs: append(append([]any{}, c.attrs...), fieldAttrs(fields)...)}
}

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	attrs := append(append([]any{}, c.attrs...), fieldAttrs(fields)...)
	if e.LoggerName != "" {
		attrs = append(attrs, "logger", e.LoggerName)
	}
	c.log.Log(context.Background(), slogLevel(e.Level), e.Message, attrs...)
	return nil
}

func (c *zapCore) Sync() error { return nil }

// fieldAttrs turns zap fields into slog key-value pairs, using zap's own
// encoder so every field type keeps its value.
func fieldAttrs(fields []zapcore.Field) []any {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]any, 0, 2*len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, k, v)
	}
	return out
}

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}
