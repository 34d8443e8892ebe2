package etcd

import (
	"time"
)

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

// maxLogTopics bounds the memory of a logLimiter. Topics contain store keys,
// so a burst of distinct keys must not grow the map without limit.
const maxLogTopics = 1024

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, topics: make(map[string]*logTopic)}
}

// allow reports whether a line on topic may be logged now and, if so, how
// many lines on it were suppressed since the last one logged.
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
