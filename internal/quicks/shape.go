package quicks

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// shape is the part of an OpenAPI schema that a Go struct cannot check
// after decoding: which members are required (present and not null; a
// required 0 or false is present) and which strings are date-times (a bad
// time.Time fails inside encoding/json without naming its field). The
// shapes below transcribe the `required` lists of the OpenAPI files.
type shape struct {
	required []string
	times    []string
	children []child
}

// child is the shape of a nested object, or of every element of an array
// of objects.
type child struct {
	name  string
	array bool
	shape *shape
}

// check walks v (a value decoded into any) and records every problem.
func (sh *shape) check(v any, path string, c *checker) {
	obj, ok := v.(map[string]any)
	if !ok {
		c.fail(orBody(path), "must be a JSON object")
		return
	}
	for _, k := range sh.required {
		val, present := obj[k]
		switch {
		case !present:
			c.fail(join(path, k), "required")
		case val == nil:
			c.fail(join(path, k), "required, must not be null")
		}
	}
	for _, k := range sh.times {
		s, ok := obj[k].(string)
		if !ok {
			continue // absent, or a wrong type that decoding names
		}
		var t time.Time
		if err := t.UnmarshalText([]byte(s)); err != nil {
			c.fail(join(path, k), fmt.Sprintf("must be an RFC 3339 date-time, not %q", clip(s)))
		}
	}
	for _, ch := range sh.children {
		val := obj[ch.name]
		if !ch.array {
			if val != nil {
				ch.shape.check(val, join(path, ch.name), c)
			}
			continue
		}
		arr, _ := val.([]any)
		for i, it := range arr {
			ch.shape.check(it, fmt.Sprintf("%s[%d]", join(path, ch.name), i), c)
		}
	}
}

func orBody(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

// decode parses one QUICKS message: JSON syntax, then the shape (required
// members, date-times), then the Go types (wrong JSON types name their
// field), then check (enums, formats, item counts). Unknown members are
// ignored (the schemas allow additional properties).
func decode[T any](data []byte, sh *shape, check func(*T) error) (T, error) {
	var v T
	if len(data) == 0 {
		return v, BadField("body", "required, must be a JSON object")
	}
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		return v, syntaxError(err)
	}
	var c checker
	sh.check(raw, "", &c)
	if err := c.err(); err != nil {
		return v, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, typeError(err)
	}
	if check != nil {
		if err := check(&v); err != nil {
			return v, err
		}
	}
	return v, nil
}

func syntaxError(err error) error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return BadField("body", fmt.Sprintf("malformed JSON at offset %d: %v", se.Offset, se))
	}
	return BadField("body", "malformed JSON: "+err.Error())
}

func typeError(err error) error {
	te, ok := errors.AsType[*json.UnmarshalTypeError](err)
	if !ok {
		return BadField("body", err.Error())
	}
	return BadField(orBody(te.Field), fmt.Sprintf("must be %s, not %s", kindName(te.Type), te.Value))
}

// kindName names the JSON type a Go type decodes from.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int32:
		return "an integer (int32)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return kindName(t.Elem())
	}
	return "a " + t.String()
}
