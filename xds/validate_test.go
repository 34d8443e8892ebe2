package xds

import (
	"errors"
	"maps"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tether-mesh/tether/mesh"
)

func mustAny(t *testing.T, msg proto.Message) *anypb.Any {
	t.Helper()
	a, err := marshalAny(msg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustResource(t *testing.T, name string, msg proto.Message) *Resource {
	t.Helper()
	r, err := NewResource(name, msg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func apiListener(t *testing.T, hcm *hcmv3.HttpConnectionManager) *listenerv3.Listener {
	return &listenerv3.Listener{Name: "svc", ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(t, hcm)}}
}

func filterListener(t *testing.T, filterName string, config proto.Message) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:    "outbound",
		Address: socketAddress("0.0.0.0", 80),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       filterName,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, config)},
		}}}},
	}
}

func validHCM(t *testing.T) *hcmv3.HttpConnectionManager {
	hcm, err := buildHTTPConnectionManager("svc", "svc")
	if err != nil {
		t.Fatal(err)
	}
	return hcm
}

func TestValidateResource(t *testing.T) {
	tests := []struct {
		name string
		msg  func(t *testing.T) proto.Message
		// wantErr is a substring of the expected error, empty for none.
		wantErr string
	}{
		{
			name:    "valid api listener",
			msg:     func(t *testing.T) proto.Message { return apiListener(t, validHCM(t)) },
			wantErr: "",
		},
		{
			name: "connection manager in api listener",
			msg: func(t *testing.T) proto.Message {
				hcm := validHCM(t)
				hcm.StatPrefix = ""
				return apiListener(t, hcm)
			},
			wantErr: "api_listener.api_listener",
		},
		{
			name: "router filter inside connection manager",
			msg: func(t *testing.T) proto.Message {
				hcm := validHCM(t)
				hcm.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{
					TypedConfig: mustAny(t, &hcmv3.HttpConnectionManager{}),
				}
				return filterListener(t, wellknown.HTTPConnectionManager, hcm)
			},
			wantErr: "filter_chains[0].filters[0].typed_config.http_filters[0].typed_config",
		},
		{
			name: "tcp proxy in filter chain",
			msg: func(t *testing.T) proto.Message {
				return filterListener(t, wellknown.TCPProxy, &tcpproxyv3.TcpProxy{
					ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "db"},
				})
			},
			wantErr: "StatPrefix",
		},
		{
			name: "cluster protocol options",
			msg: func(t *testing.T) proto.Message {
				c, err := buildCluster("svc", &mesh.Service{Name: "svc", Protocol: mesh.ProtocolHTTP2, Port: 80})
				if err != nil {
					t.Fatal(err)
				}
				c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
					httpProtocolOptionsKey: mustAny(t, &upstreamhttpv3.HttpProtocolOptions{
						UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
							ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
								ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
									Http2ProtocolOptions: &corev3.Http2ProtocolOptions{MaxConcurrentStreams: wrapperspb.UInt32(0)},
								},
							},
						},
					}),
				}
				return c
			},
			wantErr: "typed_extension_protocol_options",
		},
		{
			name: "unknown packed type",
			msg: func(*testing.T) proto.Message {
				return &listenerv3.Listener{Name: "svc", ApiListener: &listenerv3.ApiListener{
					ApiListener: &anypb.Any{TypeUrl: "type.googleapis.com/example.Unknown"},
				}}
			},
			wantErr: "unpack type.googleapis.com/example.Unknown",
		},
		{
			name:    "outer message",
			msg:     func(*testing.T) proto.Message { return &clusterv3.Cluster{Name: ""} },
			wantErr: "Name",
		},
		{
			name:    "message without rules",
			msg:     func(*testing.T) proto.Message { return wrapperspb.String("x") },
			wantErr: "no validation rules",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateResource(mustResource(t, "r", tc.msg(t)))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error = %v, want none", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("no error, want one containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestValidateAllMissesPackedMessages shows why ValidateResource unpacks:
// ValidateAll accepts a listener whose connection manager is invalid.
func TestValidateAllMissesPackedMessages(t *testing.T) {
	hcm := validHCM(t)
	hcm.StatPrefix = ""
	lis := apiListener(t, hcm)
	if err := lis.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll = %v; the premise of this test no longer holds", err)
	}
	if err := ValidateResource(mustResource(t, "svc", lis)); err == nil {
		t.Error("ValidateResource accepted an invalid connection manager")
	}
}

func TestCheckConsistent(t *testing.T) {
	tr, _ := translateState(t, bookinfo(t))

	tests := []struct {
		name    string
		typeURL string
		remove  string
		// wantErrs are substrings that must all appear in the error.
		wantErrs []string
	}{
		{
			name: "route configuration of api listener", typeURL: resourcev3.RouteType, remove: "reviews",
			wantErrs: []string{`listener "reviews" refers to ` + resourcev3.RouteType + ` "reviews"`},
		},
		{
			name: "route configuration of port", typeURL: resourcev3.RouteType, remove: "9080",
			wantErrs: []string{`listener "outbound_0.0.0.0_9080" refers to ` + resourcev3.RouteType + ` "9080"`},
		},
		{
			name: "cluster of route", typeURL: resourcev3.ClusterType, remove: "reviews/v2",
			wantErrs: []string{
				`route configuration "reviews" refers to ` + resourcev3.ClusterType + ` "reviews/v2"`,
				`route configuration "9080" refers to ` + resourcev3.ClusterType + ` "reviews/v2"`,
			},
		},
		{
			name: "cluster of tcp proxy", typeURL: resourcev3.ClusterType, remove: "mysqldb",
			wantErrs: []string{`listener "outbound_0.0.0.0_3306" refers to ` + resourcev3.ClusterType + ` "mysqldb"`},
		},
		{
			name: "assignment of cluster", typeURL: resourcev3.EndpointType, remove: "details/v1",
			wantErrs: []string{`cluster "details/v1" refers to ` + resourcev3.EndpointType + ` "details/v1"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := tr.Resources()
			res[tc.typeURL] = maps.Clone(res[tc.typeURL])
			delete(res[tc.typeURL], tc.remove)
			err := CheckConsistent(res)
			if !errors.Is(err, ErrMissingReference) {
				t.Fatalf("error = %v, want ErrMissingReference", err)
			}
			for _, want := range tc.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error = %v, want it to contain %q", err, want)
				}
			}
		})
	}
}
