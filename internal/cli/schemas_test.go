package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	invopop "github.com/invopop/jsonschema"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
)

// schemaDir holds the committed schemas of the command line's JSON.
const schemaDir = "../../schemas"

// generateSchema reflects v's type into a JSON schema: every field its
// JSON has, required unless omitempty, null allowed where a nil pointer,
// slice or map writes null, and no field beyond them.
func generateSchema(o jsonOutput) []byte {
	r := &invopop.Reflector{
		Namer: func(t reflect.Type) string {
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			if t.Name() == "" {
				return strings.NewReplacer("[]", "list-of-", "*", "", "map[", "map-of-", "]", "-").Replace(t.String())
			}
			return path.Base(t.PkgPath()) + "." + t.Name()
		},
		Mapper: func(t reflect.Type) *invopop.Schema {
			switch t {
			case reflect.TypeOf(dtetype.Duration(0)):
				return &invopop.Schema{Type: "string", Description: "a Go duration, as 24h0m0s"}
			case reflect.TypeOf(time.Duration(0)):
				return &invopop.Schema{Type: "string", Description: "a Go duration, as 24h0m0s"}
			case reflect.TypeOf(cutover.GateConfig{}):
				s := &invopop.Schema{Type: "object", AdditionalProperties: invopop.FalseSchema, Required: []string{"runs", "within", "min_span", "min_consistency"}}
				s.Properties = invopop.NewProperties()
				s.Properties.Set("runs", &invopop.Schema{Type: "integer"})
				s.Properties.Set("within", &invopop.Schema{Type: "string", Description: "a Go duration, as 24h0m0s"})
				s.Properties.Set("min_span", &invopop.Schema{Type: "string", Description: "a Go duration, as 1h0m0s"})
				s.Properties.Set("min_consistency", &invopop.Schema{Type: "number"})
				return s
			}
			return nil
		},
	}
	s := r.Reflect(o.Value)
	s.ID = invopop.ID("https://github.com/synapsedte/dtebridge/schemas/" + o.Name + ".schema.json")
	s.Title = o.Command
	s.Description = "The JSON of " + o.Command + ". It only ever gains fields."
	t := reflect.TypeOf(o.Value)
	nullables(s, s.Definitions, t, map[reflect.Type]bool{})
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// nullables lets null stand where t's JSON writes null: a nil pointer,
// slice or map in a field without omitempty.
func nullables(s *invopop.Schema, defs invopop.Definitions, t reflect.Type, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s == nil {
		return
	}
	if s.Ref != "" {
		if seen[t] {
			return
		}
		seen[t] = true
		s = defs[strings.TrimPrefix(s.Ref, "#/$defs/")]
	}
	if len(s.AnyOf) > 0 {
		s = s.AnyOf[0]
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		nullables(s.Items, defs, t.Elem(), seen)
	case reflect.Map:
		if s.AdditionalProperties != nil {
			nullables(s.AdditionalProperties, defs, t.Elem(), seen)
		}
	case reflect.Struct:
		fields(s, defs, t, seen)
	}
}

func fields(s *invopop.Schema, defs invopop.Definitions, t reflect.Type, seen map[reflect.Type]bool) {
	if s.Properties == nil {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				fields(s, defs, ft, seen)
				continue
			}
		}
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		prop, ok := s.Properties.Get(name)
		if !ok {
			continue
		}
		nullables(prop, defs, f.Type, seen)
		switch f.Type.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			if !strings.Contains(opts, "omitempty") {
				s.Properties.Set(name, &invopop.Schema{AnyOf: []*invopop.Schema{prop, {Type: "null"}}})
			}
		}
	}
}

// TestJSONSchemas: each JSON output's committed schema is what its Go type
// says (DTEBRIDGE_UPDATE_SCHEMAS=1 rewrites them), and the schema index in
// schemas/README.md lists them all.
func TestJSONSchemas(t *testing.T) {
	update := os.Getenv("DTEBRIDGE_UPDATE_SCHEMAS") != ""
	readme, err := os.ReadFile(filepath.Join(schemaDir, "README.md"))
	if err != nil && !update {
		t.Fatal(err)
	}
	for _, o := range jsonOutputs {
		want := generateSchema(o)
		file := filepath.Join(schemaDir, o.Name+".schema.json")
		if update {
			if err := os.WriteFile(file, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(file)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not current (%v): run DTEBRIDGE_UPDATE_SCHEMAS=1 go test ./internal/cli -run TestJSONSchemas", file, err)
		}
		if !strings.Contains(string(readme), "`"+o.Name+".schema.json`") {
			t.Errorf("schemas/README.md does not list %s.schema.json", o.Name)
		}
	}
}

var (
	compiledMu sync.Mutex
	compiled   = map[string]*jsonschema.Schema{}
)

// validateOutput checks a command's JSON output against its schema.
func validateOutput(t *testing.T, name, out string) {
	t.Helper()
	compiledMu.Lock()
	s, ok := compiled[name]
	if !ok {
		c := jsonschema.NewCompiler()
		var err error
		if s, err = c.Compile(filepath.Join(schemaDir, name+".schema.json")); err != nil {
			compiledMu.Unlock()
			t.Fatalf("schema %s: %v", name, err)
		}
		compiled[name] = s
	}
	compiledMu.Unlock()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("%s output is not JSON: %v\n%s", name, err, out)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("%s output does not match schemas/%s.schema.json: %v\n%s", name, name, err, out)
	}
}
