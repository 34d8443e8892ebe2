package bench

import (
	"strconv"
	"sync"
	"time"
)

// ackTracker records, per stream and resource type, the highest version a
// client ACKed, and signals a waiter when enough streams reached a target.
// Both Tether (through agent.Config.OnAck) and the go-control-plane
// baseline (through its OnStreamRequest callback) feed it versions that
// are decimal counters. It is safe for concurrent use.
type ackTracker struct {
	mu sync.Mutex
	// acked maps a stream and type to the highest version ACKed and the
	// time of that ACK; guarded by mu.
	acked map[ackKey]ackedVersion
	// wait is the one pending expectation, or nil; guarded by mu.
	wait *ackWait
	// nacks counts rejected responses; guarded by mu.
	nacks int
}

type ackKey struct {
	stream  int64
	typeURL string
}

type ackedVersion struct {
	version uint64
	at      time.Time
}

// ackWait is one expectation: want streams ACKed typeURL at target or
// later. done is closed by the tracker once that holds; at is then the
// time of the ACK that completed it.
type ackWait struct {
	typeURL string
	target  uint64
	want    int
	done    chan struct{}
	at      time.Time
}

func newAckTracker() *ackTracker {
	return &ackTracker{acked: make(map[ackKey]ackedVersion)}
}

// ack records that stream ACKed version of typeURL at time at. Versions
// that are not decimal numbers are ignored.
func (t *ackTracker) ack(stream int64, typeURL, version string, at time.Time) {
	v, err := strconv.ParseUint(version, 10, 64)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := ackKey{stream, typeURL}
	if v <= t.acked[k].version {
		return
	}
	t.acked[k] = ackedVersion{version: v, at: at}
	if w := t.wait; w != nil && w.typeURL == typeURL {
		if n, _ := t.countLocked(w); n >= w.want {
			w.at = at
			close(w.done)
			t.wait = nil
		}
	}
}

// nack counts one rejected response.
func (t *ackTracker) nack() {
	t.mu.Lock()
	t.nacks++
	t.mu.Unlock()
}

// nackCount returns the number of rejected responses so far.
func (t *ackTracker) nackCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nacks
}

// expect starts waiting until want streams ACKed typeURL at target or a
// later version. It replaces any earlier expectation. The returned wait
// may be complete already; its time is then that of the latest ACK among
// the streams counted, which is exact when no newer version followed.
func (t *ackTracker) expect(typeURL string, target uint64, want int) *ackWait {
	w := &ackWait{typeURL: typeURL, target: target, want: want, done: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, latest := t.countLocked(w); n >= want {
		w.at = latest
		close(w.done)
		return w
	}
	t.wait = w
	return w
}

// reached returns the number of streams that ACKed typeURL at target or
// later.
func (t *ackTracker) reached(typeURL string, target uint64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, _ := t.countLocked(&ackWait{typeURL: typeURL, target: target})
	return n
}

// countLocked returns the number of streams that ACKed w's type at its
// target or later, and the latest time one of them ACKed.
func (t *ackTracker) countLocked(w *ackWait) (int, time.Time) {
	n := 0
	var latest time.Time
	for k, a := range t.acked {
		if k.typeURL == w.typeURL && a.version >= w.target {
			n++
			if a.at.After(latest) {
				latest = a.at
			}
		}
	}
	return n, latest
}

// await blocks until w completes or timeout passes, and returns the time
// of the completing ACK.
func (w *ackWait) await(timeout time.Duration) (time.Time, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return w.at, true
	case <-t.C:
		return time.Time{}, false
	}
}
