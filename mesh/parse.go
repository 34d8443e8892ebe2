package mesh

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

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
	js := data
	if !json.Valid(data) {
		if n := countDocuments(data); n > 1 {
			fe.add("", "value holds %d YAML documents separated by ---; a key holds exactly one", n)
			return fe.err()
		}
		// The strict conversion rejects a field written twice; the lax one
		// would keep the last value without a word.
		var err error
		if js, err = yaml.YAMLToJSONStrict(data); err != nil {
			fe.add("", "not valid YAML or JSON: %v", err)
			return fe.err()
		}
	}
	if decodeFast(js, v) {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero()
	if err := walkFields(fe, js, reflect.TypeOf(v).Elem()); err != nil {
		fe.add("", "not valid YAML or JSON: %v", err)
		return fe.err()
	}
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
	if !bytes.HasPrefix(data, []byte("---")) && !bytes.Contains(data, []byte("\n---")) {
		return 1
	}
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

// knownFields lists a struct's JSON field names for error messages.
func knownFields(t reflect.Type) string {
	return strings.Join(sortedKeys(jsonFields(t)), ", ")
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
