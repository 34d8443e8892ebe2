package mesh

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// namePattern is the form of service, subset and route names: a DNS label
// style that is safe inside Envoy resource names and metric labels.
var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

var loadBalancers = []string{"round_robin", "least_request", "random", "ring_hash"}

var mtlsModes = []string{"strict", "permissive", "disable"}

var endpointHealth = []string{HealthHealthy, HealthUnhealthy, HealthDraining}

// ValidName reports whether s may be used as a service, subset or route name.
func ValidName(s string) bool { return namePattern.MatchString(s) }

func validateService(key, name string, s *Service) error {
	fe := &fieldErrors{key: key}
	if !ValidName(name) {
		fe.add("", "service name %q from the key is invalid: use lower-case letters, digits, '-' and '.', at most 63 characters", name)
	} else if !strings.ContainsFunc(name, unicode.IsLetter) {
		fe.add("", "service name %q from the key is invalid: it needs a letter, because names of digits only are the names of Envoy's per-port route configurations", name)
	}
	if s.Name != "" && s.Name != name {
		fe.add("name", "%q does not match the name %q in the key", s.Name, name)
	}
	switch s.Protocol {
	case ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolTCP:
	default:
		fe.add("protocol", "%q is not one of http, http2, grpc, tcp", s.Protocol)
	}
	if s.Port == 0 || s.Port > 65535 {
		fe.add("port", "%d is out of range 1 to 65535", s.Port)
	}
	if s.LoadBalancing != "" && !slices.Contains(loadBalancers, s.LoadBalancing) {
		fe.add("loadBalancing", "%q is not one of %s", s.LoadBalancing, strings.Join(loadBalancers, ", "))
	}

	subsets := validateSubsets(fe, s.Subsets)
	validateRoutes(fe, s, subsets)
	if od := s.OutlierDetection; od != nil && od.MaxEjectionPercent > 100 {
		fe.add("outlierDetection.maxEjectionPercent", "%d is more than 100", od.MaxEjectionPercent)
	}
	if s.MTLS != nil && !slices.Contains(mtlsModes, s.MTLS.Mode) {
		fe.add("mtls.mode", "%q is not one of %s", s.MTLS.Mode, strings.Join(mtlsModes, ", "))
	}
	for i, id := range s.AllowedCallers {
		if !strings.HasPrefix(id, "spiffe://") || len(id) == len("spiffe://") {
			fe.add(fmt.Sprintf("allowedCallers[%d]", i), "%q is not a SPIFFE ID (spiffe://<trust-domain>/<path>)", id)
		}
	}
	return fe.err()
}

func validateSubsets(fe *fieldErrors, subsets []Subset) map[string]bool {
	seen := make(map[string]bool, len(subsets))
	for i, ss := range subsets {
		field := fmt.Sprintf("subsets[%d]", i)
		switch {
		case !ValidName(ss.Name):
			fe.add(field+".name", "%q is not a valid subset name: use lower-case letters, digits, '-' and '.'", ss.Name)
		case seen[ss.Name]:
			fe.add(field+".name", "duplicate subset %q", ss.Name)
		}
		seen[ss.Name] = true
		if len(ss.Labels) == 0 {
			fe.add(field+".labels", "must select at least one label")
		}
	}
	return seen
}

func validateRoutes(fe *fieldErrors, s *Service, subsets map[string]bool) {
	names := make(map[string]bool, len(s.Routes))
	for i, r := range s.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		if r.Name != "" {
			if !ValidName(r.Name) {
				fe.add(field+".name", "%q is not a valid route name: use lower-case letters, digits, '-' and '.'", r.Name)
			} else if names[r.Name] {
				fe.add(field+".name", "duplicate route %q", r.Name)
			}
			names[r.Name] = true
		}
		if s.Protocol == ProtocolTCP {
			if len(s.Routes) > 1 {
				fe.add(field, "a tcp service has at most one route")
			}
			if r.Match.Path != nil || len(r.Match.Headers) > 0 || r.Timeout.Duration > 0 || r.Retries != nil {
				fe.add(field, "a tcp service's route takes only backends: no match, timeout or retries")
			}
		}
		validateMatch(fe, field+".match", r.Match)
		validateBackends(fe, field+".backends", r.Backends, subsets)
		if r.Retries != nil {
			validateRetries(fe, field+".retries", r.Retries)
		}
	}
}

func validateMatch(fe *fieldErrors, field string, m RouteMatch) {
	if p := m.Path; p != nil {
		set := countSet(p.Prefix != "", p.Exact != "", p.Regex != "")
		if set != 1 {
			fe.add(field+".path", "set exactly one of prefix, exact, regex (found %d)", set)
		}
		if (p.Prefix != "" && !strings.HasPrefix(p.Prefix, "/")) || (p.Exact != "" && !strings.HasPrefix(p.Exact, "/")) {
			fe.add(field+".path", "a path must start with /")
		}
		if p.Regex != "" {
			if _, err := regexp.Compile(p.Regex); err != nil {
				fe.add(field+".path.regex", "invalid RE2 expression: %v", err)
			}
		}
	}
	for i, h := range m.Headers {
		hf := fmt.Sprintf("%s.headers[%d]", field, i)
		if h.Name == "" || strings.ToLower(h.Name) != h.Name {
			fe.add(hf+".name", "%q must be a non-empty lower-case header name", h.Name)
		}
		if set := countSet(h.Exact != "", h.Prefix != "", h.Regex != "", h.Present); set != 1 {
			fe.add(hf, "set exactly one of exact, prefix, regex, present (found %d)", set)
		}
		if h.Regex != "" {
			if _, err := regexp.Compile(h.Regex); err != nil {
				fe.add(hf+".regex", "invalid RE2 expression: %v", err)
			}
		}
	}
}

func validateBackends(fe *fieldErrors, field string, backends []Backend, subsets map[string]bool) {
	if len(backends) == 0 {
		fe.add(field, "a route needs at least one backend")
		return
	}
	var sum uint32
	seen := make(map[string]bool, len(backends))
	for i, b := range backends {
		bf := fmt.Sprintf("%s[%d]", field, i)
		if b.Subset != "" && !subsets[b.Subset] {
			fe.add(bf+".subset", "unknown subset %q; defined subsets are [%s]", b.Subset, strings.Join(slices.Sorted(maps.Keys(subsets)), ", "))
		}
		if seen[b.Subset] {
			fe.add(bf+".subset", "subset %q appears twice in one route", b.Subset)
		}
		seen[b.Subset] = true
		if b.Weight > 100 {
			fe.add(bf+".weight", "%d is more than 100", b.Weight)
		}
		sum += b.Weight
	}
	if len(backends) == 1 && (backends[0].Weight == 0 || backends[0].Weight == 100) {
		return
	}
	if sum != 100 {
		fe.add(field, "weights add up to %d, not 100", sum)
	}
}

func validateRetries(fe *fieldErrors, field string, r *Retries) {
	if r.Attempts < 1 || r.Attempts > 10 {
		fe.add(field+".attempts", "%d is out of range 1 to 10", r.Attempts)
	}
	for i, on := range r.RetryOn {
		if !slices.Contains(retryConditions, on) {
			fe.add(fmt.Sprintf("%s.retryOn[%d]", field, i), "%q is not an Envoy retry condition; known conditions are %s", on, strings.Join(retryConditions, ", "))
		}
	}
}

// retryConditions are the x-envoy-retry-on and x-envoy-retry-grpc-on values
// Envoy documents (router filter, "x-envoy-retry-on").
var retryConditions = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
	"envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
	"retriable-headers", "http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

func validateEndpoint(key string, ep *Endpoint) error {
	fe := &fieldErrors{key: key}
	if _, err := netip.ParseAddr(ep.Address); err != nil {
		fe.add("address", "%q is not an IPv4 or IPv6 address", ep.Address)
	}
	if ep.Port == 0 || ep.Port > 65535 {
		fe.add("port", "%d is out of range 1 to 65535", ep.Port)
	}
	if ep.Weight > 128 {
		fe.add("weight", "%d is out of range 1 to 128", ep.Weight)
	}
	if !slices.Contains(endpointHealth, ep.Health) {
		fe.add("health", "%q is not one of %s", ep.Health, strings.Join(endpointHealth, ", "))
	}
	for _, k := range sortedKeys(ep.Labels) {
		if k == "" {
			fe.add("labels", "a label name must not be empty")
		}
	}
	return fe.err()
}

func countSet(conds ...bool) int {
	n := 0
	for _, c := range conds {
		if c {
			n++
		}
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
