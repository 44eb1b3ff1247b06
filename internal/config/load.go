package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// Load reads the configuration file at path, resolves its relative paths
// against the file's directory, applies defaults and validates the result.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parse(data, dir)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a configuration document, applies defaults and validates it.
// Relative paths stay relative (to the working directory); use Load for a
// file.
func Parse(data []byte) (*Config, error) {
	c, err := parse(data, "")
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// parse decodes, resolves paths against dir (if not ""), applies defaults
// and validates. Decoding and validation problems are reported together.
func parse(data []byte, dir string) (*Config, error) {
	c, decErr := decode(data)
	if c == nil {
		return nil, decErr
	}
	if dir != "" {
		c.resolvePaths(dir)
	}
	c.applyDefaults()
	if err := errors.Join(decErr, c.Validate()); err != nil {
		return nil, err
	}
	return c, nil
}

// decode decodes data strictly over Default(). It returns a nil Config for
// errors that leave nothing to validate (syntax errors, an empty document),
// and a Config with an error for per-field problems (unknown fields, values
// of the wrong type), so that Validate can add its findings.
func decode(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	if len(root.Content) == 0 {
		return nil, errors.New("empty document")
	}
	nullErrs := nullValues(root.Content[0], nil)

	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&c)
	var te *yaml.TypeError
	if err != nil && !errors.As(err, &te) {
		return nil, err
	}
	errs := append(nullErrs, typeErrors(te)...)
	var extra yaml.Node
	if dec.Decode(&extra) != io.EOF {
		errs = append(errs, errors.New("more than one YAML document"))
	}
	return &c, errors.Join(errs...)
}

// nullValues reports keys without a value: for a scalar setting, yaml.v3
// would keep the default silently, while the author probably meant "off".
func nullValues(n *yaml.Node, errs []error) []error {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
				errs = append(errs, fmt.Errorf("line %d: %q has no value: write \"\" for an empty value, or remove the line for the default", k.Line, k.Value))
				continue
			}
			errs = nullValues(v, errs)
		}
	case yaml.SequenceNode:
		for _, v := range n.Content {
			errs = nullValues(v, errs)
		}
	}
	return errs
}

var (
	unknownField = regexp.MustCompile(`^(line \d+): field (.*) not found in type config\.(\w+)$`)
	sections     = map[string]string{
		"Config": "at the top level", "Listen": "in listen", "TLS": "in tls",
		"SAE": "in saes", "Link": "in links", "Device": "in links[].device",
		"Keys": "in keys", "Store": "in store", "Log": "in log",
	}
)

// typeErrors splits a yaml.TypeError into one error per problem and says
// "unknown field" in the schema's terms rather than Go's.
func typeErrors(te *yaml.TypeError) []error {
	if te == nil {
		return nil
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		if m := unknownField.FindStringSubmatch(msg); m != nil {
			if where, ok := sections[m[3]]; ok {
				msg = fmt.Sprintf("%s: unknown field %q %s", m[1], m[2], where)
			}
		}
		errs = append(errs, errors.New(msg))
	}
	return errs
}
