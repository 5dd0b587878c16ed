package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// RulesKind and RulesAPIVersion identify a rules file.
const (
	RulesAPIVersion = "ferry.dev/v1alpha1"
	RulesKind       = "ImageRules"
)

// RulesFile is the --rules file: prefix rules the webhook applies to images
// found in no lock.
type RulesFile struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`
	Rules      []Rule `yaml:"rules" json:"rules"`
}

// ParseRules decodes and checks a rules file; unknown fields are refused so
// that a typo does not silently drop a rule.
func ParseRules(b []byte) ([]Rule, error) {
	var f RulesFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("invalid rules: %w", err)
	}
	if f.APIVersion != RulesAPIVersion || f.Kind != RulesKind {
		return nil, fmt.Errorf("not a rules file: want apiVersion %s kind %s, found apiVersion %q kind %q", RulesAPIVersion, RulesKind, f.APIVersion, f.Kind)
	}
	for i, r := range f.Rules {
		if _, err := r.normalize(); err != nil {
			return nil, fmt.Errorf("rules[%d]: %w", i, err)
		}
	}
	return f.Rules, nil
}

// ReadRules reads a rules file.
func ReadRules(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	rules, err := ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rules, nil
}
