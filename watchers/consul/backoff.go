package consul

import (
	"math/rand/v2"
	"time"
)

// backoff computes retry delays that double from min to max with jitter.
// It is not safe for concurrent use.
type backoff struct {
	min, max time.Duration
	// attempt counts the failures since the last reset.
	attempt int
}

// next returns the delay before the next retry: a random duration in the
// upper half of min·2^attempt, capped at max. The jitter spreads the
// retries of many agents that lost the same Consul agent at once.
func (b *backoff) next() time.Duration {
	d := b.max
	if b.attempt < 32 {
		d = min(b.max, b.min<<b.attempt)
	}
	if d <= 0 {
		d = b.max
	}
	b.attempt++
	half := d / 2
	return half + rand.N(d-half+1)
}

func (b *backoff) reset() { b.attempt = 0 }
