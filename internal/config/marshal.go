package config

import (
	"bytes"

	"go.yaml.in/yaml/v3"
)

// Marshal writes cfg as YAML, with defaults applied so the file shows every
// effective setting; Load reads it back as the same Config. Relative paths
// are written as they are and so will be resolved against the directory of
// the file they are written to.
func Marshal(cfg *Config) ([]byte, error) {
	c := *cfg.Sanitized()
	c.applyDefaults()
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&c); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
