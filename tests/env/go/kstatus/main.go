// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils), the
// library Flux and kubectl-based pipelines judge resources with, computes
// for one object. The end-to-end tests pipe live objects through it so the
// pool's conditions are checked against the real library, not against our
// reading of its rules.
//
// Input: one object as JSON on stdin. Output: one JSON line,
// {"status": "Current", "message": "..."}.
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

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(raw); err != nil {
		fail("decoding the object: %v", err)
	}
	res, err := status.Compute(&u)
	if err != nil {
		fail("kstatus: %v", err)
	}
	out, err := json.Marshal(result{Status: res.Status.String(), Message: res.Message})
	if err != nil {
		fail("encoding the result: %v", err)
	}
	fmt.Println(string(out))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(2)
}
