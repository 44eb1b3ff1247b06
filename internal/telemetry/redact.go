package telemetry

import (
	"encoding"
	"fmt"
	"reflect"
	"sync"
)

// verdict says whether values of a type can hold raw bytes.
type verdict uint8

const (
	clean   verdict = iota // no raw bytes reachable
	dynamic                // only through an interface: look at the value
	dirty                  // raw bytes reachable through the type alone
)

var (
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	errorType     = reflect.TypeFor[error]()
	verdicts      sync.Map // reflect.Type → verdict
)

// walkBudget bounds the values inspected for one attribute; a value too big
// to inspect is redacted.
const walkBudget = 1024

// redactValue returns the replacement text for x and true if x must not be
// logged as it is.
func redactValue(x any) (string, bool) {
	rv := reflect.ValueOf(x)
	if !rv.IsValid() {
		return "", false
	}
	t := rv.Type()
	switch {
	case isByteSeq(t) && !t.Implements(textMarshaler):
		return fmt.Sprintf("[REDACTED len=%d]", rv.Len()), true
	case t.Implements(textMarshaler) || t.Implements(errorType):
		return "", false // both handlers print these through the method
	}
	budget := walkBudget
	if holdsBytes(rv, &budget) {
		return "[REDACTED type=" + t.String() + "]", true
	}
	return "", false
}

// isByteSeq reports whether t is a byte slice or byte array, named or not.
func isByteSeq(t reflect.Type) bool {
	k := t.Kind()
	return (k == reflect.Slice || k == reflect.Array) && t.Elem().Kind() == reflect.Uint8
}

// holdsBytes reports whether v holds raw bytes anywhere inside.
func holdsBytes(v reflect.Value, budget *int) bool {
	if *budget--; *budget < 0 {
		return true
	}
	switch typeVerdict(v.Type()) {
	case clean:
		return false
	case dirty:
		return true
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		return !v.IsNil() && holdsBytes(v.Elem(), budget)
	case reflect.Struct:
		for i := range v.NumField() {
			if holdsBytes(v.Field(i), budget) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if holdsBytes(v.Index(i), budget) {
				return true
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if holdsBytes(it.Key(), budget) || holdsBytes(it.Value(), budget) {
				return true
			}
		}
	}
	return false
}

func typeVerdict(t reflect.Type) verdict {
	if v, ok := verdicts.Load(t); ok {
		return v.(verdict)
	}
	v := computeVerdict(t, map[reflect.Type]bool{})
	verdicts.Store(t, v)
	return v
}

// computeVerdict is the worst verdict over every type reachable from t.
// Nested values print field by field (fmt shows unexported fields raw, without
// calling their methods), so only byte types that are text (IDs, addresses)
// count as clean here.
func computeVerdict(t reflect.Type, seen map[reflect.Type]bool) verdict {
	if isByteSeq(t) {
		if t.Implements(textMarshaler) {
			return clean
		}
		return dirty
	}
	if seen[t] {
		return clean // already counted where first reached
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Interface:
		return dynamic
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return computeVerdict(t.Elem(), seen)
	case reflect.Map:
		return max(computeVerdict(t.Key(), seen), computeVerdict(t.Elem(), seen))
	case reflect.Struct:
		v := clean
		for i := range t.NumField() {
			v = max(v, computeVerdict(t.Field(i).Type, seen))
		}
		return v
	}
	return clean
}
