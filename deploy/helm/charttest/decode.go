// Package charttest checks the Helm chart in ../portvakt: it renders the
// chart with each value set in ../portvakt/ci and decodes every object
// strictly into its Kubernetes API type, so that a misspelt or misplaced
// field fails here rather than being dropped by the API server.
package charttest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one rendered document, decoded.
type Object struct {
	APIVersion, Kind, Name string
	// Source is the template it came from (helm's "# Source:" line).
	Source string
	// Typed is a pointer to the Kubernetes API type (*appsv1.Deployment,
	// ...) or to this package's ServiceMonitor or PrometheusRule.
	Typed any
}

// kinds are the types the chart may render, by apiVersion and kind. A
// document of any other kind is an error: the chart has no business
// rendering it, and it could not be checked.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/PersistentVolumeClaim":                func() any { return &corev1.PersistentVolumeClaim{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &PrometheusRule{} },
}

// Decode splits a multi-document YAML stream (helm template's output) and
// decodes each non-empty document strictly: a field its type does not
// have, or a key given twice, is an error naming the document.
func Decode(stream []byte) ([]Object, error) {
	var objs []Object
	for i, doc := range splitDocuments(stream) {
		obj, err := decodeOne(doc.body)
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i+1, doc.source, err)
		}
		if obj == nil {
			continue // comments only
		}
		obj.Source = doc.source
		objs = append(objs, *obj)
	}
	return objs, nil
}

func decodeOne(doc []byte) (*Object, error) {
	var tm struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	if tm.APIVersion == "" && tm.Kind == "" {
		var rest any
		if err := yaml.Unmarshal(doc, &rest); err != nil || rest != nil {
			return nil, fmt.Errorf("a document without apiVersion and kind")
		}
		return nil, nil
	}
	newTyped, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("apiVersion %q kind %q: not a kind this test knows; add its type to kinds", tm.APIVersion, tm.Kind)
	}
	typed := newTyped()
	// As the API server decodes: YAML to JSON (a key given twice is
	// refused), then JSON case-sensitively, refusing unknown and duplicate
	// fields. Not yaml.UnmarshalStrict: its encoding/json matches field
	// names case-insensitively, so readOnlyRootFileSystem would pass for
	// readOnlyRootFilesystem, which the API server drops.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.Kind, tm.Metadata.Name, err)
	}
	strict, err := sigsjson.UnmarshalStrict(js, typed)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.Kind, tm.Metadata.Name, err)
	}
	return &Object{APIVersion: tm.APIVersion, Kind: tm.Kind, Name: tm.Metadata.Name, Typed: typed}, nil
}

type document struct {
	source string
	body   []byte
}

// splitDocuments cuts the stream at lines that are "---" alone.
func splitDocuments(stream []byte) []document {
	var docs []document
	var cur bytes.Buffer
	flush := func() {
		body := append([]byte(nil), cur.Bytes()...)
		cur.Reset()
		if len(bytes.TrimSpace(body)) == 0 {
			return
		}
		source := "?"
		for _, line := range strings.Split(string(body), "\n") {
			if s, ok := strings.CutPrefix(line, "# Source: "); ok {
				source = s
				break
			}
		}
		docs = append(docs, document{source: source, body: body})
	}
	for _, line := range strings.SplitAfter(string(stream), "\n") {
		if strings.TrimRight(line, " \r\n") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return docs
}
