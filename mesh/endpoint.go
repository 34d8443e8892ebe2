package mesh

// Endpoint is the document stored under <prefix>endpoints/<service>/<instance>.
// Instances usually write it under an etcd lease so that it disappears when
// the instance dies.
type Endpoint struct {
	// Key is the store key the document was read from. It is not part of
	// the document.
	Key string `json:"-"`
	// Address is an IPv4 or IPv6 address.
	Address string `json:"address"`
	// Port is 1 to 65535.
	Port uint32 `json:"port"`
	// Labels select the endpoint into subsets, such as version: v2.
	Labels   map[string]string `json:"labels,omitempty"`
	Locality Locality          `json:"locality,omitempty"`
	// Weight is the load-balancing weight, 1 to 128. Default 1.
	Weight uint32 `json:"weight,omitempty"`
	// Health is healthy (default), unhealthy or draining. Only healthy
	// endpoints receive new requests.
	Health string `json:"health,omitempty"`
}

// Locality places an endpoint for locality-aware load balancing.
type Locality struct {
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	SubZone string `json:"subZone,omitempty"`
}

// Endpoint health values.
const (
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
	HealthDraining  = "draining"
)
