// Package demo holds the example mesh that `tether dev` serves: the
// bookinfo services with a weighted route to three versions of reviews,
// and small gRPC backends for every endpoint so a person or a test can
// watch where requests land.
package demo

import (
	"fmt"
	"sort"
)

// Port is the service port every demo service declares.
const Port = 9080

// Instance is one demo endpoint.
type Instance struct {
	Service string
	// Name is the instance name, also the endpoint key's last segment and
	// the server id the backend puts in its replies.
	Name   string
	Labels map[string]string
}

// Services returns the demo service documents by service name, as YAML.
// reviews splits traffic 50/30/20 over v1, v2 and v3, except that requests
// with the header end-user: jason always go to v2.
func Services() map[string]string {
	return map[string]string{
		"productpage": simpleService,
		"details":     simpleService,
		"ratings":     simpleService,
		"reviews":     reviewsService,
	}
}

const simpleService = `protocol: grpc
port: 9080
subsets:
  - name: v1
    labels: {version: v1}
routes:
  - name: default
    backends:
      - subset: v1
    timeout: 5s
`

const reviewsService = `protocol: grpc
port: 9080
loadBalancing: round_robin
subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
routes:
  - name: jason
    match:
      headers:
        - name: end-user
          exact: jason
    backends:
      - subset: v2
  - name: split
    backends:
      - subset: v1
        weight: 50
      - subset: v2
        weight: 30
      - subset: v3
        weight: 20
    timeout: 5s
    retries:
      attempts: 2
      retryOn: [unavailable]
outlierDetection:
  consecutive5xx: 5
  interval: 10s
  baseEjectionTime: 30s
  maxEjectionPercent: 50
`

// Instances returns the demo endpoints in a fixed order: one per version
// of each service.
func Instances() []Instance {
	versions := map[string][]string{
		"productpage": {"v1"},
		"details":     {"v1"},
		"ratings":     {"v1"},
		"reviews":     {"v1", "v2", "v3"},
	}
	names := make([]string, 0, len(versions))
	for n := range versions {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Instance
	for _, svc := range names {
		for _, v := range versions[svc] {
			out = append(out, Instance{
				Service: svc,
				Name:    fmt.Sprintf("%s-%s", svc, v),
				Labels:  map[string]string{"app": svc, "version": v},
			})
		}
	}
	return out
}
