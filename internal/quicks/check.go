package quicks

import (
	"fmt"
	"math"
	"regexp"
)

// checker collects the problems of one message.
type checker struct{ errs FieldErrors }

func (c *checker) fail(field, reason string) {
	c.errs = append(c.errs, &FieldError{Field: field, Reason: reason})
}

func (c *checker) err() error { return c.errs.asError() }

// required: a required string must not be empty.
func (c *checker) required(field, v string) {
	if v == "" {
		c.fail(field, "required, must not be empty")
	}
}

// uuid checks an optional UUID (empty passes).
func (c *checker) uuid(field, v string) {
	if v != "" && !IsUUID(v) {
		c.fail(field, fmt.Sprintf("must be a UUID, not %q", clip(v)))
	}
}

// requiredUUID checks a required UUID.
func (c *checker) requiredUUID(field, v string) {
	if v == "" {
		c.fail(field, "required, must be a UUID")
		return
	}
	c.uuid(field, v)
}

// nonNegative: integers declared with minimum 0.
func (c *checker) nonNegative(field string, v int) {
	if v < 0 {
		c.fail(field, "must not be negative")
	}
}

// list checks a required array of strings with at least min items, none
// of them empty.
func (c *checker) list(field string, v []string, min int) {
	switch {
	case v == nil:
		c.fail(field, "required")
	case len(v) < min:
		c.fail(field, fmt.Sprintf("must have at least %d item(s)", min))
	}
	c.items(field, v)
}

// items: no item of a string array may be empty.
func (c *checker) items(field string, v []string) {
	for i, s := range v {
		if s == "" {
			c.fail(fmt.Sprintf("%s[%d]", field, i), "must not be empty")
		}
	}
}

// uuids: every item of an array must be a UUID.
func (c *checker) uuids(field string, v []string) {
	for i, s := range v {
		c.requiredUUID(fmt.Sprintf("%s[%d]", field, i), s)
	}
}

// enum reports a value outside its enum.
func (c *checker) enum(field, v string, valid bool, want string) {
	if !valid {
		c.fail(field, fmt.Sprintf("unknown value %q, want %s", clip(v), want))
	}
}

// clip shortens a client's value quoted back in a problem detail.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// join builds a field path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// uuidRE is the textual UUID form of RFC 9562 §4 (OpenAPI format uuid).
var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsUUID reports whether s is a UUID in the 8-4-4-4-12 hex form.
func IsUUID(s string) bool { return uuidRE.MatchString(s) }

// semverRE is the pattern the OpenAPI files give for version strings (the
// one suggested at semver.org).
var semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// IsSemver reports whether s is a semantic version (semver.org 2.0.0).
func IsSemver(s string) bool { return semverRE.MatchString(s) }

// Int32 saturates n to the int32 range of the performance entry fields
// (format int32).
func Int32(n int64) int32 {
	return int32(min(max(n, math.MinInt32), math.MaxInt32))
}
