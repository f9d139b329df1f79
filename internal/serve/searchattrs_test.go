package serve_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/shadow"
)

// namespace registers a namespace of the test's own on the dev server,
// with custom search attributes already there, and returns a client for it.
func namespace(t *testing.T, name string, attrs map[string]enums.IndexedValueType) client.Client {
	t.Helper()
	ctx := context.Background()
	tc := testenv.TemporalClient(t)
	if _, err := tc.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{Namespace: name,
		WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if len(attrs) > 0 {
		if _, err := tc.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: name, SearchAttributes: attrs}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.Dial(client.Options{HostPort: testenv.Temporal(t).Address(), Namespace: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestSearchAttributes: on a new namespace serve registers the shadow's
// search attributes and waits until they are usable; where it cannot
// (the namespace's Int slots taken) it runs without them and says so in
// /readyz, a metric and its log, with the commands that register them; an
// attribute of another type refuses the start and names it.
func TestSearchAttributes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_") + "_"

	fresh := namespace(t, prefix+"fresh", nil)
	sa := shadow.EnsureSearchAttributes(ctx, fresh, prefix+"fresh", testLogger(t))
	if !sa.OK || len(sa.Registered) != len(shadow.SearchAttributeTypes()) || sa.Visible <= 0 {
		t.Fatalf("a new namespace: %+v", sa)
	}
	if again := shadow.EnsureSearchAttributes(ctx, fresh, prefix+"fresh", testLogger(t)); !again.OK || len(again.Registered) != 0 {
		t.Errorf("registered already: %+v", again)
	}

	wrongNS := prefix + "wrong"
	wrong := namespace(t, wrongNS, map[string]enums.IndexedValueType{"DtebridgeCycle": enums.INDEXED_VALUE_TYPE_KEYWORD})
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{NoServe: true, Temporal: wrong, Namespace: wrongNS})
	if _, err := b.TryStart(); err == nil || !strings.Contains(err.Error(), "DtebridgeCycle is Keyword, the bridge needs Int") {
		t.Fatalf("an attribute of another type: %v", err)
	}

	// SQL visibility has three Int slots per namespace: taken, the
	// shadow's Int attributes cannot be registered.
	fullNS := prefix + "full"
	full := namespace(t, fullNS, map[string]enums.IndexedValueType{"OtherA": enums.INDEXED_VALUE_TYPE_INT,
		"OtherB": enums.INDEXED_VALUE_TYPE_INT, "OtherC": enums.INDEXED_VALUE_TYPE_INT})
	b = bridgetest.New(t, legacysim.Seed, &bridgetest.Options{NoServe: true, Temporal: full, Namespace: fullNS})
	srv := b.Start()
	resp, err := http.Get("http://" + srv.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Ready    bool     `json:"ready"`
		Degraded []string `json:"degraded"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !ready.Ready || len(ready.Degraded) != 1 || !strings.Contains(ready.Degraded[0], "without their search attributes") {
		t.Errorf("/readyz without search attributes: %+v", ready)
	}
	resp, err = http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "\ndtebridge_shadow_search_attributes 0\n") {
		t.Errorf("metric dtebridge_shadow_search_attributes is not 0")
	}
	sa = shadow.EnsureSearchAttributes(ctx, full, fullNS, testLogger(t))
	if sa.OK || !strings.Contains(strings.Join(sa.Commands, "\n"), "temporal operator search-attribute create --namespace "+fullNS+" --name DtebridgeCycle --type Int") {
		t.Errorf("the commands that register them: %+v", sa)
	}
	// The shadows still follow legacy, without the attributes.
	b.Simulate(3, 60, 5)
	b.Quiescent(60 * time.Second)
	bridgetest.CompareViews(t, b.LegacyView(), b.ShadowView())
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestEnsureNamespace: serve --temporal-create-namespace creates a missing
// namespace with the configured retention, and leaves an existing one.
func TestEnsureNamespace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tc := testenv.TemporalClient(t)
	ns := "test_ensure_namespace"
	created, err := shadow.EnsureNamespace(ctx, tc, ns, 48*time.Hour)
	if err != nil || !created {
		t.Fatalf("a missing namespace: created %v, %v", created, err)
	}
	d, err := tc.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	if err != nil || d.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration() != 48*time.Hour {
		t.Fatalf("the namespace created: %v %v", d, err)
	}
	if created, err := shadow.EnsureNamespace(ctx, tc, ns, time.Hour); err != nil || created {
		t.Errorf("an existing namespace: created %v, %v", created, err)
	}
}
