package shadow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"
)

// indexedTypes maps SearchAttributeTypes' names to Temporal's.
var indexedTypes = map[string]enums.IndexedValueType{"Int": enums.INDEXED_VALUE_TYPE_INT, "Keyword": enums.INDEXED_VALUE_TYPE_KEYWORD,
	"Bool": enums.INDEXED_VALUE_TYPE_BOOL}

// typeName is the CLI's name of a Temporal search attribute type.
func typeName(t enums.IndexedValueType) string {
	for n, v := range indexedTypes {
		if v == t {
			return n
		}
	}
	return strings.TrimPrefix(t.String(), "IndexedValueType")
}

// SearchAttributes is what the shadow's search attributes are in a
// namespace: OK when every one is registered with its type and visible;
// otherwise Problem says why, and Commands are what registers the missing
// ones.
type SearchAttributes struct {
	OK bool `json:"ok"`
	// Problem says why the workflows run without search attributes.
	Problem string `json:"problem,omitempty"`
	// WrongType lists attributes that exist with another type: an error
	// only an operator can fix (the workflows would fail to upsert them).
	WrongType []string `json:"wrong_type,omitempty"`
	// Commands register the missing attributes, where the bridge may not.
	Commands []string `json:"commands,omitempty"`
	// Registered lists the attributes the bridge registered, and Visible
	// how long they took to become usable.
	Registered []string      `json:"registered,omitempty"`
	Visible    time.Duration `json:"visible_after,omitempty"`
}

// CheckSearchAttributes compares the namespace's custom search attributes
// with the shadow's, by name and type, and returns the missing ones and
// the mistyped ones (described).
func CheckSearchAttributes(ctx context.Context, c client.Client, ns string) (missing map[string]enums.IndexedValueType, wrong []string, err error) {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		return nil, nil, err
	}
	missing = map[string]enums.IndexedValueType{}
	for name, typ := range SearchAttributeTypes() {
		have, ok := resp.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = indexedTypes[typ]
		case have != indexedTypes[typ]:
			wrong = append(wrong, fmt.Sprintf("%s is %s, the bridge needs %s", name, typeName(have), typ))
		}
	}
	slices.Sort(wrong)
	return missing, wrong, nil
}

// CreateCommands are the Temporal CLI commands that register attributes.
func CreateCommands(ns string, attrs map[string]enums.IndexedValueType) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		out = append(out, fmt.Sprintf("temporal operator search-attribute create --namespace %s --name %s --type %s", ns, name, typeName(attrs[name])))
	}
	return out
}

// AllCreateCommands are the Temporal CLI commands that register every one
// of the shadow's search attributes.
func AllCreateCommands(ns string) []string {
	return CreateCommands(ns, typesOf(SearchAttributeTypes()))
}

// EnsureSearchAttributes makes sure the shadow's search attributes exist in
// namespace ns with their types, registering the missing ones if the
// server lets it (Temporal Cloud does not: there they must be registered
// beforehand, and Commands say how), and waits until the namespace can use
// the ones it registered: a namespace's mapping reaches the history
// service moments after registration, and signals carrying the attributes
// fail until then.
func EnsureSearchAttributes(ctx context.Context, c client.Client, ns string, log *slog.Logger) SearchAttributes {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	missing, wrong, err := CheckSearchAttributes(ctx, c, ns)
	if err != nil {
		return SearchAttributes{Problem: fmt.Sprintf("cannot list the search attributes of namespace %s: %v", ns, err),
			Commands: AllCreateCommands(ns)}
	}
	if len(wrong) > 0 {
		return SearchAttributes{WrongType: wrong, Problem: fmt.Sprintf("search attributes exist in namespace %s with another type: %s; remove them "+
			"(temporal operator search-attribute remove) and let serve register them, or register them with the types shown", ns, strings.Join(wrong, "; "))}
	}
	if len(missing) == 0 {
		return SearchAttributes{OK: true}
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: ns, SearchAttributes: missing}); err != nil {
		return SearchAttributes{Problem: fmt.Sprintf("cannot register search attributes in namespace %s (%v): run the commands shown", ns, err),
			Commands: CreateCommands(ns, missing)}
	}
	sa := SearchAttributes{Registered: slices.Sorted(maps.Keys(missing))}
	began := time.Now()
	if err := waitUsable(ctx, c, ns); err != nil {
		sa.Problem = fmt.Sprintf("search attributes registered in namespace %s are not usable after %s: %v", ns, time.Since(began).Round(time.Millisecond), err)
		return sa
	}
	sa.OK, sa.Visible = true, time.Since(began)
	log.Info("search attributes registered", "namespace", ns, "attributes", strings.Join(sa.Registered, ","), "usable_after", sa.Visible.Round(time.Millisecond))
	return sa
}

func typesOf(m map[string]string) map[string]enums.IndexedValueType {
	out := map[string]enums.IndexedValueType{}
	for n, t := range m {
		out[n] = indexedTypes[t]
	}
	return out
}

// waitUsable waits until the namespace lists every attribute and a
// visibility query on all of them is accepted.
func waitUsable(ctx context.Context, c client.Client, ns string) error {
	var terms []string
	for name, typ := range SearchAttributeTypes() {
		switch typ {
		case "Int":
			terms = append(terms, name+" = 0")
		case "Bool":
			terms = append(terms, name+" = false")
		default:
			terms = append(terms, name+" = ''")
		}
	}
	slices.Sort(terms)
	query := strings.Join(terms, " AND ")
	var last error
	for {
		missing, wrong, err := CheckSearchAttributes(ctx, c, ns)
		switch {
		case err != nil:
			last = err
		case len(wrong) > 0:
			return errors.New(strings.Join(wrong, "; "))
		case len(missing) > 0:
			last = fmt.Errorf("%d not listed yet", len(missing))
		default:
			_, err := c.WorkflowService().CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: ns, Query: query})
			var invalid *serviceerror.InvalidArgument
			if err == nil || !errors.As(err, &invalid) {
				return nil // usable (an error other than an unknown attribute is not this wait's business)
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// EnsureNamespace creates namespace ns with the given workflow retention
// unless it exists, and waits until the server knows it; created says
// whether it did.
func EnsureNamespace(ctx context.Context, c client.Client, ns string, retention time.Duration) (created bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	var nf *serviceerror.NamespaceNotFound
	if err == nil || !errors.As(err, &nf) {
		return false, err
	}
	if _, err := c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{Namespace: ns,
		WorkflowExecutionRetentionPeriod: durationpb.New(retention)}); err != nil {
		var exists *serviceerror.NamespaceAlreadyExists
		if !errors.As(err, &exists) {
			return false, fmt.Errorf("error creating namespace %s: %w", ns, err)
		}
	}
	// Describe reads the namespace from persistence; the services each
	// keep their own cache of namespaces, refreshed every few seconds on a
	// production cluster. Probes through the frontend, a history shard and
	// a matching partition must stop answering "namespace not found": a
	// workflow that does not exist is then "workflow not found", and a task
	// queue answers. (Other hosts of a larger cluster refresh on the same
	// schedule; the mirror retries what they refuse meanwhile.)
	for {
		err = namespaceKnown(ctx, c, ns)
		if err == nil {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return true, fmt.Errorf("namespace %s was created but is not usable: %w", ns, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// namespaceKnown probes whether the services know namespace ns. A probe
// the server refuses to this client (permission, or an API it does not
// offer) proves nothing either way and is passed over.
func namespaceKnown(ctx context.Context, c client.Client, ns string) error {
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns}); err != nil {
		return err
	}
	if _, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns}); err != nil && !refused(err) {
		return err
	}
	_, err := c.WorkflowService().DescribeWorkflowExecution(ctx, &workflowservice.DescribeWorkflowExecutionRequest{Namespace: ns,
		Execution: &commonpb.WorkflowExecution{WorkflowId: "dtebridge-namespace-probe"}})
	var notFound *serviceerror.NotFound
	if err != nil && !errors.As(err, &notFound) && !refused(err) {
		return err
	}
	_, err = c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{Namespace: ns,
		TaskQueue: &taskqueuepb.TaskQueue{Name: "dtebridge-namespace-probe", Kind: enums.TASK_QUEUE_KIND_NORMAL}})
	if err != nil && !refused(err) {
		return err
	}
	return nil
}

// refused reports whether the server refused a call to this client rather
// than failing it.
func refused(err error) bool {
	var denied *serviceerror.PermissionDenied
	var unimplemented *serviceerror.Unimplemented
	return errors.As(err, &denied) || errors.As(err, &unimplemented)
}
