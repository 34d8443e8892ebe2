package consul

import (
	"bytes"
	"sync"
	"testing"

	"github.com/tether-mesh/tether/internal/consultest"
)

// sharedAgent is one agent for the tests that do not restart it, started
// by the first test that requests it and stopped by TestMain.
var sharedAgent struct {
	once  sync.Once
	agent *consultest.Agent
	err   error
}

// sharedConsul returns the shared agent, or ends the test as
// consultest.RequireBinary does when the binary is missing.
func sharedConsul(t *testing.T) *consultest.Agent {
	t.Helper()
	consultest.RequireBinary(t)
	sharedAgent.once.Do(func() {
		sharedAgent.agent = consultest.New(t)
		sharedAgent.err = sharedAgent.agent.Start()
	})
	if sharedAgent.err != nil {
		t.Fatal(sharedAgent.err)
	}
	return sharedAgent.agent
}

func stopSharedConsul() {
	if sharedAgent.agent != nil {
		sharedAgent.agent.Close()
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
