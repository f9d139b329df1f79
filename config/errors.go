package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// settingError is a problem with one setting, named by its path in the
// file (cutover.gate.min_consistency, reconcile.expected[1].kind).
type settingError struct {
	path, msg string
}

func (e *settingError) Error() string { return e.path + ": " + e.msg }

func settingf(path, format string, args ...any) error {
	return &settingError{path: path, msg: fmt.Sprintf(format, args...)}
}

// settingPath matches the setting an error message starts with.
var settingPath = regexp.MustCompile(`^(legacy|capture|definitions|shadow|reconcile|cutover|http|temporal)(\.[a-z_]+|\[\d+\])*`)

// located renders err as file:line: message, finding the line of the
// setting the error names in the document.
func located(name string, root *yaml.Node, err error) error {
	path := ""
	var se *settingError
	if errors.As(err, &se) {
		path = se.path
	} else {
		path = settingPath.FindString(err.Error())
	}
	if line := lineOf(root, path); line > 0 {
		return fmt.Errorf("%s:%d: %w", name, line, err)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// lineOf returns the line of the deepest node of path that the document
// has (0: none).
func lineOf(root *yaml.Node, path string) int {
	if root == nil || path == "" {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range splitPath(path) {
		next := (*yaml.Node)(nil)
		if i, err := strconv.Atoi(part); err == nil {
			if n.Kind == yaml.SequenceNode && i < len(n.Content) {
				next = n.Content[i]
			}
		} else if n.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == part {
					line, next = n.Content[j].Line, n.Content[j+1]
					break
				}
			}
		}
		if next == nil {
			break
		}
		if next.Kind == yaml.SequenceNode || next.Kind == yaml.MappingNode {
			if line == 0 {
				line = next.Line
			}
		} else {
			line = next.Line
		}
		n = next
	}
	return line
}

func splitPath(path string) []string {
	path = strings.NewReplacer("[", ".", "]", "").Replace(path)
	return strings.Split(path, ".")
}

var (
	unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	cannotDecode = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+) `?([^`]*)`? into (\\S+)$")
)

// decodeError rewrites the YAML decoder's errors in the file's terms:
// settings by their names, never Go types.
func decodeError(name string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg, syntax := strings.CutPrefix(err.Error(), "yaml: ")
		suffix := ""
		if syntax {
			suffix = " (not valid YAML)"
		}
		if m := regexp.MustCompile(`^line (\d+): (.*)$`).FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("%s:%s: %s%s", name, m[1], m[2], suffix)
		}
		return fmt.Errorf("%s: %s%s", name, msg, suffix)
	}
	var out []string
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			known := knownSettings[m[3]]
			hint := ""
			if s := closest(m[2], known); s != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
			} else if len(known) > 0 {
				hint = fmt.Sprintf(" (known here: %s)", strings.Join(known, ", "))
			}
			out = append(out, fmt.Sprintf("%s:%s: unknown setting %q%s", name, m[1], m[2], hint))
			continue
		}
		if m := cannotDecode.FindStringSubmatch(e); m != nil {
			out = append(out, fmt.Sprintf("%s:%s: %s", name, m[1], wantedValue(m[2], m[3], m[4])))
			continue
		}
		out = append(out, name+": "+strings.TrimPrefix(e, "yaml: "))
	}
	return errors.New(strings.Join(out, "\n"))
}

// wantedValue says what a setting needs instead of what it got.
func wantedValue(got, value, into string) string {
	shown := strconv.Quote(value)
	switch got {
	case "seq":
		shown = "a list"
	case "map":
		shown = "a map"
	}
	switch {
	case strings.HasPrefix(into, "int") || strings.HasPrefix(into, "uint"):
		return shown + " is not a whole number"
	case strings.HasPrefix(into, "float"):
		return shown + " is not a number"
	case into == "bool":
		return shown + " is not true or false"
	case strings.HasPrefix(into, "[]"):
		return shown + " is not a list: write [a, b] or one item per line"
	case strings.HasPrefix(into, "map["):
		return shown + " is not a map: write key: value pairs"
	case into == "string":
		return shown + " is not a single value"
	}
	return shown + " is not a value this setting takes"
}

// knownSettings are the settings each section of the file takes, by the
// Go type the decoder names.
var knownSettings = func() map[string][]string {
	out := map[string][]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || out[t.String()] != nil {
			return
		}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			names = append(names, tag)
		}
		out[t.String()] = names
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				walk(t.Field(i).Type)
			}
		}
	}
	walk(reflect.TypeOf(Config{}))
	return out
}()

// closest returns the known name within two edits of s, if any.
func closest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(s), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = slices.Min([]int{prev[j] + 1, cur[j-1] + 1, prev[j-1] + cost})
		}
		prev = cur
	}
	return prev[len(b)]
}
