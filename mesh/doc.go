// Package mesh defines Tether's service-configuration schema, its strict
// parser and validator, and State: the complete desired state of the mesh
// that watchers emit and the xDS translator consumes.
//
// Documents live in a store under a prefix:
//
//	<prefix>services/<name>               a Service document (YAML or JSON)
//	<prefix>endpoints/<service>/<instance> an Endpoint document (YAML or JSON)
//
// Parsing is strict. Unknown fields, malformed durations, weights that do not
// add up to 100, routes to unknown subsets and duplicate names are errors,
// and every error names the store key, the field and the reason.
package mesh
