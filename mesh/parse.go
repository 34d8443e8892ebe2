package mesh

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// MaxDocumentBytes is the largest document the parser accepts. A service
// document of this size would already hold thousands of routes.
const MaxDocumentBytes = 256 << 10

// ParseService parses and validates a service document. key is the store
// key, used in errors and to check the name; name is the service name the
// key implies.
func ParseService(key, name string, data []byte) (*Service, error) {
	var svc Service
	if err := decodeStrict(key, data, &svc); err != nil {
		return nil, err
	}
	if svc.Protocol == "" {
		svc.Protocol = ProtocolHTTP
	}
	if err := validateService(key, name, &svc); err != nil {
		return nil, err
	}
	if svc.Name == "" {
		svc.Name = name
	}
	svc.Key = key
	return &svc, nil
}

// ParseEndpoint parses and validates an endpoint document.
func ParseEndpoint(key string, data []byte) (*Endpoint, error) {
	var ep Endpoint
	if err := decodeStrict(key, data, &ep); err != nil {
		return nil, err
	}
	if ep.Weight == 0 {
		ep.Weight = 1
	}
	if ep.Health == "" {
		ep.Health = HealthHealthy
	}
	if err := validateEndpoint(key, &ep); err != nil {
		return nil, err
	}
	ep.Key = key
	return &ep, nil
}

// decodeStrict reads YAML or JSON into v. Every unknown field and every value
// of the wrong type is reported with its path.
func decodeStrict(key string, data []byte, v any) error {
	fe := &fieldErrors{key: key}
	if len(data) > MaxDocumentBytes {
		fe.add("", "document is %d bytes, larger than the limit of %d", len(data), MaxDocumentBytes)
		return fe.err()
	}
	if len(bytes.TrimSpace(data)) == 0 {
		fe.add("", "document is empty")
		return fe.err()
	}
	if n := countDocuments(data); n > 1 {
		fe.add("", "value holds %d YAML documents separated by ---; a key holds exactly one", n)
		return fe.err()
	}
	// The strict conversion rejects a field written twice; the lax one
	// would keep the last value without a word.
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		fe.add("", "not valid YAML or JSON: %v", err)
		return fe.err()
	}

	var raw any
	if err := json.Unmarshal(js, &raw); err != nil {
		fe.add("", "not valid YAML or JSON: %v", err)
		return fe.err()
	}
	if _, ok := raw.(map[string]any); !ok {
		fe.add("", "document must be a mapping of fields, not %s", jsonKind(raw))
		return fe.err()
	}
	checkFields(fe, "", raw, reflect.TypeOf(v).Elem())
	if err := fe.err(); err != nil {
		return err
	}

	if err := json.Unmarshal(js, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			fe.add(typeErr.Field, "expected %s, found %s", typeErr.Type, typeErr.Value)
		} else {
			fe.add("", "%v", err)
		}
		return fe.err()
	}
	return nil
}

var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// countDocuments counts the YAML documents in data that hold more than
// comments and blank lines. The YAML to JSON conversion reads only the
// first, so a second one would be dropped unseen.
func countDocuments(data []byte) int {
	n := 0
	for _, part := range documentSeparator.Split(string(data), -1) {
		for _, line := range strings.Split(part, "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") {
				n++
				break
			}
		}
	}
	return n
}

var durationType = reflect.TypeOf(Duration{})

// checkFields walks a decoded JSON value next to the Go type it will be
// decoded into and reports unknown fields, wrong kinds and bad durations with
// their full path. encoding/json reports unknown fields without a path.
func checkFields(fe *fieldErrors, path string, raw any, t reflect.Type) {
	if raw == nil {
		return
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		s, ok := raw.(string)
		if !ok {
			fe.add(path, "expected a duration string with a unit such as \"5s\", found %s", jsonKind(raw))
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			fe.add(path, "invalid duration %q: write a number with a unit, such as \"250ms\" or \"5s\"", s)
		} else if d < 0 {
			fe.add(path, "invalid duration %q: must not be negative", s)
		}
	case t.Kind() == reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			fe.add(path, "expected a mapping of fields, found %s", jsonKind(raw))
			return
		}
		fields := jsonFields(t)
		for _, name := range sortedKeys(m) {
			ft, known := fields[name]
			if !known {
				fe.add(join(path, name), "unknown field; known fields are %s", strings.Join(sortedKeys(fields), ", "))
				continue
			}
			checkFields(fe, join(path, name), m[name], ft)
		}
	case t.Kind() == reflect.Slice:
		items, ok := raw.([]any)
		if !ok {
			fe.add(path, "expected a list, found %s", jsonKind(raw))
			return
		}
		for i, item := range items {
			checkFields(fe, fmt.Sprintf("%s[%d]", path, i), item, t.Elem())
		}
	case t.Kind() == reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			fe.add(path, "expected a mapping, found %s", jsonKind(raw))
			return
		}
		for _, k := range sortedKeys(m) {
			checkFields(fe, join(path, k), m[k], t.Elem())
		}
	case t.Kind() == reflect.String:
		if _, ok := raw.(string); !ok {
			fe.add(path, "expected a string, found %s", jsonKind(raw))
		}
	case t.Kind() == reflect.Bool:
		if _, ok := raw.(bool); !ok {
			fe.add(path, "expected true or false, found %s", jsonKind(raw))
		}
	case t.Kind() == reflect.Uint32:
		n, ok := raw.(float64)
		if !ok || n != float64(uint32(n)) {
			fe.add(path, "expected a whole number from 0 to 4294967295, found %s", describe(raw))
		}
	}
}

// jsonFields maps the JSON names of a struct's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f.Type
	}
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

func describe(v any) string {
	if n, ok := v.(float64); ok {
		return fmt.Sprintf("%v", n)
	}
	return jsonKind(v)
}
