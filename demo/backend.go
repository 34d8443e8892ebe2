package demo

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// Backend is one running demo endpoint: a gRPC server on loopback with the
// standard health service and grpc.testing.TestService, whose UnaryCall
// reply carries the instance name in server_id.
type Backend struct {
	Instance Instance
	// Addr is the host:port the backend listens on.
	Addr   string
	server *grpc.Server
	done   chan struct{}
}

// StartBackend starts a backend for inst on a free loopback port.
func StartBackend(inst Instance) (*Backend, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for backend %s: %w", inst.Name, err)
	}
	b := &Backend{Instance: inst, Addr: lis.Addr().String(), server: grpc.NewServer(), done: make(chan struct{})}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(inst.Service, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(b.server, hs)
	testgrpc.RegisterTestServiceServer(b.server, &echo{inst: inst})
	go func() {
		defer close(b.done)
		_ = b.server.Serve(lis)
	}()
	return b, nil
}

// Stop closes the backend's connections and waits for its server
// goroutine.
func (b *Backend) Stop() {
	b.server.Stop()
	<-b.done
}

type echo struct {
	testgrpc.UnimplementedTestServiceServer
	inst Instance
}

func (e *echo) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (e *echo) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{
		ServerId: e.inst.Name,
		Hostname: e.inst.Service,
		Payload:  req.GetPayload(),
	}, nil
}
