package shadow

import (
	"context"
	"log/slog"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
)

// EnsureSearchAttributes makes sure the shadow's search attributes exist in
// namespace ns, registering the missing ones if the server lets it, and
// reports whether they do.
func EnsureSearchAttributes(ctx context.Context, c client.Client, ns string, log *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		log.Warn("cannot list search attributes; running without them", "error", err)
		return false
	}
	missing := map[string]enums.IndexedValueType{}
	for name, typ := range SearchAttributeTypes() {
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			missing[name] = map[string]enums.IndexedValueType{"Int": enums.INDEXED_VALUE_TYPE_INT, "Keyword": enums.INDEXED_VALUE_TYPE_KEYWORD,
				"Bool": enums.INDEXED_VALUE_TYPE_BOOL}[typ]
		}
	}
	if len(missing) == 0 {
		return true
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: ns, SearchAttributes: missing}); err != nil {
		log.Warn("cannot register search attributes; running without them", "error", err)
		return false
	}
	return true
}
