// Package config is the schema of a node's YAML configuration file (`qkms
// serve --config node.yaml`; docs/configuration.md): strict decoding (an
// unknown field is an error naming it and its line), every default in one
// place (Default and applyDefaults in defaults.go), and Validate, which
// reports every problem at once (STYLE habit 6).
//
// Secrets never appear inline: the PSK of each link and the store's KEK are
// named by *_file paths, and Validate insists that PSK files are private
// (mode 0600). Relative paths are resolved against the directory of the
// file that names them. Marshal writes a Config that Load reads back
// unchanged, so `qkms net up` can generate per-node files.
//
// Other packages take their own Options; only node and cmd import config.
package config
