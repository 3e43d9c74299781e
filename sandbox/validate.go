package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/lestrrat-go/jsval"
	"github.com/stripe/stripe-mock/embedded"
	"github.com/stripe/stripe-mock/param/coercer"
	"github.com/stripe/stripe-mock/spec"
)

// APIVersion is the Stripe API version the sandbox speaks: the version
// stripe-go v76 sends, and the version of the OpenAPI spec bundled with the
// stripe-mock release pinned in go.mod (v0.180.0), which validates every
// request.
const APIVersion = "2023-10-16"

// Spec is Stripe's OpenAPI description of API 2023-10-16, loaded once per
// process from stripe-mock's embedded copy: its routes validate requests
// and its component schemas describe the objects the sandbox answers with.
type Spec struct {
	doc        *spec.Spec
	routes     []*specRoute
	components *spec.ComponentsForValidation

	mu         sync.Mutex
	validators map[string]*jsval.JSVal // response schemas by name, built on first use
}

type specRoute struct {
	method  string
	path    string // as the spec writes it, e.g. /v1/customers/{customer}
	pattern *regexp.Regexp
	params  int
	op      *spec.Operation

	once      sync.Once
	schema    *spec.Schema
	mediaType string
	validator *jsval.JSVal
	err       error
}

var (
	loadedSpec     *Spec
	loadedSpecErr  error
	loadedSpecOnce sync.Once
)

// LoadSpec returns the process's copy of the 2023-10-16 spec, decoding it on
// first use (about half a second; validators are built per endpoint as
// requests first reach it).
func LoadSpec() (*Spec, error) {
	loadedSpecOnce.Do(func() {
		doc := &spec.Spec{}
		if err := json.Unmarshal(embedded.OpenAPISpec, doc); err != nil {
			loadedSpecErr = fmt.Errorf("sandbox: load stripe-mock's spec: %w", err)
			return
		}
		if doc.Info == nil || doc.Info.Version != APIVersion {
			loadedSpecErr = fmt.Errorf("sandbox: stripe-mock's bundled spec is not API %s; pin the release that bundles it", APIVersion)
			return
		}
		s := &Spec{doc: doc, validators: map[string]*jsval.JSVal{}}
		for path, verbs := range doc.Paths {
			pattern, n := compileSpecPath(string(path))
			for verb, op := range verbs {
				s.routes = append(s.routes, &specRoute{
					method: strings.ToUpper(string(verb)), path: string(path),
					pattern: pattern, params: n, op: op,
				})
			}
		}
		// Static segments win over parameters: /v1/invoices/upcoming is not
		// the invoice "upcoming".
		sort.SliceStable(s.routes, func(i, j int) bool { return s.routes[i].params < s.routes[j].params })
		loadedSpec = s
	})
	return loadedSpec, loadedSpecErr
}

// isSpecParam reports whether a path segment is a parameter, {customer}.
func isSpecParam(part string) bool {
	return len(part) > 2 && part[0] == '{' && part[len(part)-1] == '}'
}

func compileSpecPath(path string) (*regexp.Regexp, int) {
	var b strings.Builder
	b.WriteString(`\A`)
	n := 0
	for _, part := range strings.Split(path, "/") {
		if part == "" {
			continue
		}
		if isSpecParam(part) {
			b.WriteString(`/[^/]+`)
			n++
			continue
		}
		b.WriteString("/" + regexp.QuoteMeta(part))
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String()), n
}

// route finds the spec's operation for a request, or nil when Stripe's API
// has no such endpoint.
func (s *Spec) route(method, path string) *specRoute {
	for _, r := range s.routes {
		if r.method == method && r.pattern.MatchString(path) {
			return r
		}
	}
	return nil
}

// Validate coerces params (form values arrive as strings) to the types the
// spec gives them and checks them against the endpoint's schema, as Stripe
// does before it acts. It returns a Stripe invalid_request_error when the
// request does not fit API 2023-10-16.
func (s *Spec) Validate(r *http.Request, params map[string]any) *Error {
	route := s.route(r.Method, r.URL.Path)
	if route == nil {
		return &Error{Status: http.StatusNotFound, Type: invalidRequest,
			Message: fmt.Sprintf("Unrecognized request URL (%s: %s).", r.Method, r.URL.Path)}
	}
	route.once.Do(func() { route.build(s) })
	if route.err != nil {
		return &Error{Status: http.StatusInternalServerError, Type: "api_error",
			Message: "The sandbox could not build a validator for " + route.method + " " + route.path + "."}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodDelete && route.mediaType != "" {
		ct := strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0])
		if len(params) > 0 && ct != route.mediaType {
			return &Error{Status: http.StatusBadRequest, Type: invalidRequest,
				Message: fmt.Sprintf("Invalid Content-Type: expected %s.", route.mediaType)}
		}
	}
	if route.schema == nil || route.validator == nil {
		return nil
	}
	if err := coercer.CoerceParams(route.schema, params); err != nil {
		return &Error{Status: http.StatusBadRequest, Type: invalidRequest,
			Message: "Invalid request: " + err.Error()}
	}
	if name := unknownParam(route.schema, params, ""); name != "" {
		return &Error{Status: http.StatusBadRequest, Type: invalidRequest, Param: name,
			Message: "Received unknown parameter: " + name + " (API " + APIVersion + ")"}
	}
	if err := route.validator.Validate(params); err != nil {
		msg := validatorName().ReplaceAllString(err.Error(), "")
		return &Error{Status: http.StatusBadRequest, Type: invalidRequest,
			Message: "Invalid request for API " + APIVersion + ": " + msg}
	}
	return nil
}

// validatorName matches jsval's "validator 0x... failed: " prefix; compiled
// on first use, so that the API's process (which links the sandbox for its
// subcommand) pays nothing for it.
var validatorName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`validator 0x[0-9a-f]+ failed: `) })

// unknownParam names the first parameter (as Stripe names it, a[b]) that
// the schema has no property for, or "".
func unknownParam(schema *spec.Schema, params map[string]any, prefix string) string {
	if schema == nil || schema.Properties == nil || schema.AdditionalPropertiesAllowed || schema.AdditionalProperties != nil {
		return ""
	}
	for _, k := range sortedKeys(params) {
		name := k
		if prefix != "" {
			name = prefix + "[" + k + "]"
		}
		p, ok := schema.Properties[k]
		if !ok {
			return name
		}
		if sub, ok := params[k].(map[string]any); ok {
			if n := unknownParam(p, sub, name); n != "" {
				return n
			}
		}
	}
	return ""
}

func (r *specRoute) build(s *Spec) {
	if s.components == nil {
		s.mu.Lock()
		if s.components == nil {
			s.components = spec.GetComponentsForValidation(&s.doc.Components)
		}
		s.mu.Unlock()
	}
	if r.method == http.MethodGet {
		r.schema = spec.BuildQuerySchema(r.op)
		r.validator, r.err = spec.GetValidatorForOpenAPI3Schema(r.schema, nil)
		return
	}
	if r.op.RequestBody == nil {
		return
	}
	for mediaType, content := range r.op.RequestBody.Content {
		r.mediaType, r.schema = mediaType, content.Schema
		break
	}
	if r.schema != nil {
		s.mu.Lock()
		comps := s.components
		s.mu.Unlock()
		r.validator, r.err = spec.GetValidatorForOpenAPI3Schema(r.schema, comps)
	}
}

// ValidateObject checks an object the sandbox answers with against the
// spec's schema of that resource (e.g. "subscription"). The sandbox's tests
// use it to hold every response to Stripe's documented shape.
func (s *Spec) ValidateObject(schemaName string, obj any) error {
	s.mu.Lock()
	if s.components == nil {
		s.components = spec.GetComponentsForValidation(&s.doc.Components)
	}
	v, ok := s.validators[schemaName]
	s.mu.Unlock()
	if !ok {
		schema := s.doc.Components.Schemas[schemaName]
		if schema == nil {
			return fmt.Errorf("the spec has no schema %q", schemaName)
		}
		var err error
		v, err = spec.GetValidatorForOpenAPI3Schema(schema, s.components)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.validators[schemaName] = v
		s.mu.Unlock()
	}
	return v.Validate(obj)
}

// blank returns an object of the named resource with every required field
// the spec allows to be null set to null, every required list empty, and
// the object's constant fields (object: "subscription") set: the skeleton
// the sandbox fills in, so that the shape follows the spec and nothing
// pretends to be a value it is not.
func (s *Spec) blank(schemaName string) object {
	o := object{}
	schema := s.doc.Components.Schemas[schemaName]
	if schema == nil {
		return o
	}
	for _, name := range schema.Required {
		p := schema.Properties[name]
		if p == nil {
			continue
		}
		switch {
		case len(p.Enum) == 1:
			o[name] = p.Enum[0]
		case p.Nullable:
			o[name] = nil
		case p.Type == spec.TypeBoolean:
			o[name] = false
		case p.Type == spec.TypeArray:
			o[name] = []any{}
		case p.Type == spec.TypeObject && p.Properties["object"] != nil && len(p.Properties["object"].Enum) == 1 &&
			p.Properties["object"].Enum[0] == "list":
			o[name] = object{"object": "list", "data": []any{}, "has_more": false, "url": ""}
		case p.Type == spec.TypeObject && p.Properties == nil:
			o[name] = object{}
		}
	}
	return o
}
