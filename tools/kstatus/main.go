// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils), the library Flux and Helm judge custom
// resources with, computes for one object: the tests give it a live CanaryApp (`kubectl get -o json`) so
// that the status they check is the one those tools read, not the project's own reading of its conditions.
//
// Usage: kubectl get canaryapp NAME -o json | kstatus
// Output: {"status":"InProgress","message":"..."} on stdout; exit 1 with the cause on stderr when the input
// is not one Kubernetes object.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func compute(input io.Reader) (result, error) {
	data, err := io.ReadAll(input)
	if err != nil {
		return result{}, fmt.Errorf("reading stdin: %w", err)
	}
	// UnmarshalJSON keeps integers as int64, which kstatus' generation checks require (encoding/json would
	// give float64 and every check would fail).
	object := &unstructured.Unstructured{}
	if err := object.UnmarshalJSON(data); err != nil {
		return result{}, fmt.Errorf("reading one Kubernetes object as JSON from stdin: %w", err)
	}
	computed, err := status.Compute(object)
	if err != nil {
		return result{}, fmt.Errorf("computing the status of %s %s: %w", object.GetKind(), object.GetName(), err)
	}
	return result{Status: computed.Status.String(), Message: computed.Message}, nil
}

func main() {
	computed, err := compute(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(computed); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
