package xds

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// stream is the state of one open xDS stream. Its loop runs on the gRPC
// handler goroutine; a second goroutine only receives requests.
type stream struct {
	srv       *Server
	id        int64
	kind      string
	fixedType string
	w         *watcher
	nonce     uint64

	mu sync.Mutex
	// node is set from the first request that carries one; guarded by mu.
	node *corev3.Node
	// subs maps a type URL to its subscription. The loop goroutine changes
	// subscriptions while holding mu, so status can copy them.
	subs        map[string]*subscription
	connectedAt time.Time
	peer        string
}

func (s *Server) newStream(ctx context.Context, kind, fixedType string) *stream {
	st := &stream{
		srv:         s,
		id:          s.nextID.Add(1),
		kind:        kind,
		fixedType:   fixedType,
		w:           s.cache.addWatcher(),
		subs:        make(map[string]*subscription),
		connectedAt: s.now(),
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		st.peer = p.Addr.String()
	}
	s.addStream(st)
	return st
}

func (st *stream) nextNonce() string {
	st.nonce++
	return strconv.FormatUint(st.nonce, 10)
}

// typeOf checks the request's type URL against the service it came in on.
func (st *stream) typeOf(typeURL string) (string, error) {
	if st.fixedType == "" {
		if typeURL == "" {
			return "", status.Error(codes.InvalidArgument, "request has no type_url")
		}
		return typeURL, nil
	}
	if typeURL != "" && typeURL != st.fixedType {
		return "", status.Errorf(codes.InvalidArgument, "type_url %q sent on the %s stream", typeURL, st.fixedType)
	}
	return st.fixedType, nil
}

// subscription returns the type's subscription, creating it on first use.
// The caller holds st.mu.
func (st *stream) subscriptionLocked(typeURL string) (*subscription, bool) {
	sub, ok := st.subs[typeURL]
	if !ok {
		sub = newSubscription(typeURL)
		st.subs[typeURL] = sub
	}
	return sub, !ok
}

func (st *stream) setNode(n *corev3.Node) {
	if n == nil || st.node != nil {
		return
	}
	st.node = n
	st.srv.log.Info("xds stream opened", "stream_id", st.id, "node_id", n.GetId(),
		"cluster", n.GetCluster(), "user_agent", n.GetUserAgentName(), "kind", st.kind, "peer", st.peer)
}

func (st *stream) nodeID() string {
	if st.node == nil {
		return ""
	}
	return st.node.GetId()
}

// orderedTypes returns the subscribed types in push order.
func (st *stream) orderedTypes() []string {
	out := make([]string, 0, len(st.subs))
	for _, t := range pushOrder {
		if _, ok := st.subs[t]; ok {
			out = append(out, t)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(st.subs)) {
		if !slices.Contains(pushOrder, t) {
			out = append(out, t)
		}
	}
	return out
}

func (st *stream) status() StreamStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := StreamStatus{
		ID:          st.id,
		Kind:        st.kind,
		Peer:        st.peer,
		ConnectedAt: st.connectedAt,
	}
	if st.node != nil {
		out.NodeID = st.node.GetId()
		out.Cluster = st.node.GetCluster()
		out.UserAgent = st.node.GetUserAgentName()
	}
	for _, t := range st.orderedTypes() {
		ts := st.subs[t].status
		ts.Subscribed = slices.Clone(ts.Subscribed)
		ts.ErrorKeys = slices.Clone(ts.ErrorKeys)
		ts.ErrorResources = slices.Clone(ts.ErrorResources)
		out.Types = append(out.Types, ts)
	}
	return out
}

func (st *stream) recordAck(sub *subscription, nonce string) {
	now := st.srv.now()
	if !sub.ack(nonce, now) {
		return
	}
	st.srv.metrics.acks.WithLabelValues(sub.typeURL).Inc()
	if st.srv.onAck != nil {
		st.srv.onAck(AckEvent{StreamID: st.id, NodeID: st.nodeID(), TypeURL: sub.typeURL,
			Version: sub.status.VersionAcked, At: now})
	}
}

func (st *stream) recordNack(sub *subscription, nonce, detail string) {
	bad := sub.nack(nonce, detail, st.srv.now())
	if sub.status.VersionNacked == "" {
		return
	}
	st.srv.metrics.nacks.WithLabelValues(sub.typeURL).Inc()
	names := make([]string, len(bad))
	for i, r := range bad {
		names[i] = r.Name
	}
	// A rejected version is never resent, so this logs once per version.
	st.srv.log.Warn("xds client rejected a response; it keeps its last accepted version",
		"stream_id", st.id, "node_id", st.nodeID(), "type_url", sub.typeURL,
		"version_nacked", sub.status.VersionNacked, "version_acked", sub.status.VersionAcked,
		"resources", names, "store_keys", sub.status.ErrorKeys, "error", detail)
}

// serve runs one stream's loop for either protocol variant: it passes each
// request to handle and each cache change to flush, and sends what they
// return, until the stream ends. handle and flush run on the calling
// goroutine, one at a time.
func serve[Req, Resp any](st *stream, gs grpc.BidiStreamingServer[Req, Resp],
	handle func(*Req) ([]*Resp, error), flush func() []*Resp,
) error {
	ctx := gs.Context()
	reqs := make(chan *Req, 1)
	errc := make(chan error, 1)
	// The receiver ends when gRPC cancels ctx after the handler returns.
	// It is the one goroutine a stream does not wait for, because Recv
	// cannot be interrupted from the handler.
	go receive(ctx, gs.Recv, reqs, errc)

	for {
		var out []*Resp
		var err error
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return streamEnd(err)
		case req := <-reqs:
			out, err = handle(req)
		case <-st.w.wake:
			out = flush()
		}
		if err != nil {
			return err
		}
		for _, resp := range out {
			if err := gs.Send(resp); err != nil {
				return streamEnd(err)
			}
		}
	}
}

// receive forwards requests from recv to out until recv fails or ctx ends.
// It sends the receive error on errc, which has capacity one.
func receive[T any](ctx context.Context, recv func() (*T, error), out chan<- *T, errc chan<- error) {
	for {
		req, err := recv()
		if err != nil {
			errc <- err
			return
		}
		select {
		case out <- req:
		case <-ctx.Done():
			return
		}
	}
}

// streamEnd turns the error that ended a stream into the handler's result.
func streamEnd(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return nil
	}
	return err
}
