package mesh

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// decodeFast decodes a JSON object into v when nothing about it needs a
// precise error. That holds when no key is written twice in one object,
// no key differs only in case from a field name (encoding/json would
// accept it), and encoding/json with unknown fields disallowed accepts
// the rest. Otherwise it returns false, and the caller runs the field
// walk, which finds and names every problem. Most documents are valid,
// and this path is several times faster than the walk.
func decodeFast(js []byte, v any) bool {
	if !keysPlain(js) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return false
	}
	return !dec.More()
}

// foldedFieldNames maps the lower-case form of every JSON field name in the
// schema to its exact spelling.
var foldedFieldNames = sync.OnceValue(func() map[string]string {
	out := make(map[string]string)
	var visit func(t reflect.Type)
	seen := map[reflect.Type]bool{}
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] || t == durationType {
			return
		}
		seen[t] = true
		for name, ft := range jsonFields(t) {
			out[strings.ToLower(name)] = name
			visit(ft)
		}
	}
	visit(reflect.TypeOf(Service{}))
	visit(reflect.TypeOf(Endpoint{}))
	return out
})

// keysPlain scans a JSON document that starts with an object and reports
// whether every object key is unique within its object and either spelled
// exactly like a schema field or like none of them regardless of case.
// Map keys (labels) pass the same check, so a label named "Port" sends the
// document to the slow path, which accepts it.
func keysPlain(js []byte) bool {
	js = bytes.TrimSpace(js)
	if len(js) == 0 || js[0] != '{' {
		return false
	}
	names := foldedFieldNames()
	// keys holds the keys of every open object; arrays push nil.
	var keys [][]string
	expectKey := false
	for i := 0; i < len(js); i++ {
		switch c := js[i]; c {
		case '{':
			keys = append(keys, []string{})
			expectKey = true
		case '[':
			keys = append(keys, nil)
			expectKey = false
		case '}', ']':
			if len(keys) == 0 {
				return false
			}
			keys = keys[:len(keys)-1]
			expectKey = false
		case ',':
			expectKey = len(keys) > 0 && keys[len(keys)-1] != nil
		case '"':
			end, raw, ok := scanString(js, i)
			if !ok {
				return false
			}
			if expectKey {
				top := len(keys) - 1
				for _, k := range keys[top] {
					if k == raw {
						return false
					}
				}
				keys[top] = append(keys[top], raw)
				if exact, ok := names[strings.ToLower(raw)]; ok && exact != raw {
					return false
				}
				expectKey = false
			}
			i = end
		}
	}
	return len(keys) == 0
}

// scanString returns the index of the closing quote of the string that
// starts at js[start] and its raw contents. A string with escapes is
// reported as not ok, so its document takes the slow path, which decodes
// escapes properly.
func scanString(js []byte, start int) (end int, raw string, ok bool) {
	for i := start + 1; i < len(js); i++ {
		switch js[i] {
		case '\\':
			return 0, "", false
		case '"':
			return i, string(js[start+1 : i]), true
		}
	}
	return 0, "", false
}
