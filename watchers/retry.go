package watchers

import (
	"math/rand/v2"
	"time"
)

// Backoff computes retry delays that double from Min to Max with jitter.
// It is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	// attempt counts the failures since the last Reset.
	attempt int
}

// Next returns the delay before the next retry: a random duration in the
// upper half of Min·2^attempt, capped at Max. The jitter spreads the
// retries of many agents that lost the same store at the same moment.
func (b *Backoff) Next() time.Duration {
	d := b.Max
	if b.attempt < 32 {
		d = min(b.Max, b.Min<<b.attempt)
	}
	if d <= 0 {
		d = b.Max
	}
	b.attempt++
	half := d / 2
	return half + rand.N(d-half+1)
}

// Reset starts the delays over from Min, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// LogLimiter passes at most one log line per topic per interval and counts
// the lines it suppressed in between. It is not safe for concurrent use.
type LogLimiter struct {
	interval time.Duration
	topics   map[string]*logTopic
}

type logTopic struct {
	last       time.Time
	suppressed int
}

// maxLogTopics bounds the memory of a LogLimiter. Topics contain store keys
// and service names, so a burst of distinct ones must not grow the map
// without limit.
const maxLogTopics = 1024

// NewLogLimiter returns a limiter that passes one line per topic per
// interval.
func NewLogLimiter(interval time.Duration) *LogLimiter {
	return &LogLimiter{interval: interval, topics: make(map[string]*logTopic)}
}

// Allow reports whether a line on topic may be logged at now and, if so,
// how many lines on it were suppressed since the last one logged.
func (l *LogLimiter) Allow(topic string, now time.Time) (ok bool, suppressed int) {
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
