// Command gitops-check reads one Kubernetes object as JSON on stdin and prints, as JSON, what a
// GitOps tool makes of it:
//
//	gitops-check kstatus             the status kstatus computes (sigs.k8s.io/cli-utils), as Flux's
//	                                 health checks, kpt and `kubectl` plugins built on it do;
//	gitops-check argocd-health FILE  the result of the Argo CD health check in FILE (Lua), run in
//	                                 gopher-lua, the interpreter Argo CD embeds, with the object as
//	                                 the global `obj`, as Argo CD sets it.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: gitops-check kstatus | argocd-health SCRIPT  (object JSON on stdin)")
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	// Decoded as the API machinery does (integers stay int64), which kstatus relies on.
	var decoded unstructured.Unstructured
	if err := decoded.UnmarshalJSON(data); err != nil {
		fail("stdin is not a Kubernetes object: %v", err)
	}
	object := decoded.Object
	var result map[string]string
	switch os.Args[1] {
	case "kstatus":
		result = kstatus(object)
	case "argocd-health":
		if len(os.Args) != 3 {
			fail("usage: gitops-check argocd-health SCRIPT")
		}
		result = argocdHealth(os.Args[2], object)
	default:
		fail("unknown command %q", os.Args[1])
	}
	if err := json.NewEncoder(os.Stdout).Encode(result); err != nil {
		fail("writing the result: %v", err)
	}
}

func kstatus(object map[string]any) map[string]string {
	computed, err := status.Compute(&unstructured.Unstructured{Object: object})
	if err != nil {
		fail("kstatus: %v", err)
	}
	return map[string]string{"status": computed.Status.String(), "message": computed.Message}
}

func argocdHealth(script string, object map[string]any) map[string]string {
	state := lua.NewState()
	defer state.Close()
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoFile(script); err != nil {
		fail("running %s: %v", script, err)
	}
	returned, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		fail("%s returned %s, not a table", script, state.Get(-1).Type())
	}
	return map[string]string{
		"status":  lua.LVAsString(returned.RawGetString("status")),
		"message": lua.LVAsString(returned.RawGetString("message")),
	}
}

// toLua converts decoded JSON into Lua values: objects and arrays become tables (arrays indexed
// from 1, so ipairs walks them), numbers, strings and booleans their Lua kinds, null nil.
func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case map[string]any:
		table := state.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	case []any:
		table := state.NewTable()
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gitops-check: "+format+"\n", args...)
	os.Exit(2)
}
