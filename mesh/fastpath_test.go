package mesh

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestKeysPlain(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want bool
	}{
		{"plain", `{"port": 80, "labels": {"version": "v1"}}`, true},
		{"duplicate top-level key", `{"port": 80, "port": 81}`, false},
		{"duplicate nested key", `{"labels": {"a": "1", "a": "2"}}`, false},
		{"equal keys in sibling objects", `{"subsets": [{"name": "a"}, {"name": "b"}]}`, true},
		{"field name in another case", `{"Port": 80}`, false},
		{"label named like a field in another case", `{"labels": {"Port": "x"}}`, false},
		{"escaped string", `{"name": "a\"b"}`, false},
		{"not an object", `["port"]`, false},
		{"null", `null`, false},
		{"string values are not keys", `{"name": "port", "protocol": "Port"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keysPlain([]byte(tt.doc)); got != tt.want {
				t.Errorf("keysPlain(%s) = %v, want %v", tt.doc, got, tt.want)
			}
		})
	}
}

// FuzzDecodeFastAgrees checks that the fast path never accepts a document
// the field walk rejects, and decodes it to the same value.
func FuzzDecodeFastAgrees(f *testing.F) {
	for _, seed := range []string{
		`{"address": "10.0.0.1", "port": 80, "labels": {"v": "1"}, "weight": 2}`,
		`{"port": 80, "routes": [{"backends": [{"subset": "a", "weight": 100}], "timeout": "1s"}]}`,
		`{"port": 80, "Port": 81}`,
		`{"port": 1e2}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		if !json.Valid(js) {
			return
		}
		for _, typ := range []reflect.Type{reflect.TypeOf(Service{}), reflect.TypeOf(Endpoint{})} {
			fast := reflect.New(typ)
			if !decodeFast(js, fast.Interface()) {
				continue
			}
			fe := &fieldErrors{key: "k"}
			if err := walkFields(fe, js, typ); err != nil || fe.err() != nil {
				t.Fatalf("fast path accepted %s as %s, the walk rejects it: %v %v", js, typ, err, fe.err())
			}
			slow := reflect.New(typ)
			if err := json.Unmarshal(js, slow.Interface()); err != nil {
				t.Fatalf("fast path accepted %s, json.Unmarshal rejects it: %v", js, err)
			}
			if !reflect.DeepEqual(fast.Interface(), slow.Interface()) {
				t.Fatalf("fast and slow decodes of %s differ", js)
			}
		}
	})
}
