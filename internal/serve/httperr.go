package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// apiError is the body of every error the HTTP API answers, whatever the
// status: a stable code, a message for people (naming no Go type, host or
// secret), and for refused commands the rule that refused them.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Rule    string `json:"rule,omitempty"`
}

// Error codes of the HTTP API.
const (
	codeBadRequest   = "bad_request"
	codeUnauthorized = "unauthorized"
	codeNotFound     = "not_found"
	codeRejected     = "rejected"
	codeBusy         = "busy"
	codeUnavailable  = "unavailable"
)

func writeError(w http.ResponseWriter, status int, code, rule, message string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dtebridge"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	writeJSON(w, apiError{Code: code, Message: message, Rule: rule})
}

// bodyError says what is wrong with a JSON request body in the terms of
// the API, not of Go's decoder.
func bodyError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("the body is not valid JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		want := map[string]string{"string": "a string", "int64": "an integer", "bool": "true or false"}[typ.Type.Kind().String()]
		if want == "" {
			want = "of another type"
		}
		return fmt.Sprintf("%s must be %s, not %s", typ.Field, want, typ.Value)
	case errors.As(err, &tooBig):
		return fmt.Sprintf("the body is larger than %d bytes", tooBig.Limit)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case err.Error() == "EOF":
		return "the body is empty: send a JSON object"
	}
	return "the body is not a valid JSON object"
}
