package mesh_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-mesh/tether/mesh"
)

const (
	docsExamples = "../docs/examples"
	schemaDoc    = "../docs/schema.md"
	// endpointSuffix marks an endpoint document in docs/examples. Every
	// other file there is a service document named after the file.
	endpointSuffix = ".endpoint.yaml"
)

// TestDocsExamplesParse keeps docs/examples in step with the parser.
func TestDocsExamplesParse(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(docsExamples, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var services, endpoints int
	for _, p := range paths {
		base := filepath.Base(p)
		t.Run(base, func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if instance, ok := strings.CutSuffix(base, endpointSuffix); ok {
				endpoints++
				key := mesh.EndpointKey(testPrefix, "example", instance)
				if _, err := mesh.ParseEndpoint(key, data); err != nil {
					t.Errorf("ParseEndpoint: %v", err)
				}
				return
			}
			services++
			name := strings.TrimSuffix(base, ".yaml")
			if _, err := mesh.ParseService(mesh.ServiceKey(testPrefix, name), name, data); err != nil {
				t.Errorf("ParseService: %v", err)
			}
		})
	}
	if services == 0 || endpoints == 0 {
		t.Errorf("found %d service and %d endpoint examples in %s, expected at least one of each", services, endpoints, docsExamples)
	}
}

// TestDocsErrorExamples checks that every error line that docs/schema.md
// shows for the documents in testdata/invalid is what the parser reports.
func TestDocsErrorExamples(t *testing.T) {
	schema, err := os.ReadFile(schemaDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"invalid/reviews-decode.yaml", "invalid/reviews-rules.yaml"} {
		t.Run(file, func(t *testing.T) {
			doc := readTestdata(t, file)
			if !strings.Contains(string(schema), string(doc)) {
				t.Errorf("%s does not show the document %s verbatim", schemaDoc, file)
			}
			_, err := mesh.ParseService(testServiceKey, testService, doc)
			for _, fe := range fieldErrorsOf(t, err) {
				if !strings.Contains(string(schema), fe.Error()) {
					t.Errorf("%s does not show the error line\n%s", schemaDoc, fe.Error())
				}
			}
		})
	}
}
