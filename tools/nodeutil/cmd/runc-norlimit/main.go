// Command runc-norlimit runs the real runc after deleting the rlimits from what it is asked to start.
//
// On these machines (a VM without CAP_SYS_RESOURCE) runc cannot set any rlimit on a container
// process, not even to its current value, so every start fails with "error setting rlimit". Podman
// on the host and containerd in the kind node both take this wrapper as their runc: it removes
// process.rlimits from the bundle's config.json (create, run) and rlimits from the --process file
// (exec, which kind and kubelet use all the time), then replaces itself with the real runc.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// realRunc is the runc this wrapper stands in for; VAOP_REAL_RUNC overrides it.
const realRunc = "/usr/sbin/runc"

func main() {
	args := os.Args[1:]
	command := subcommand(args)
	switch command {
	case "create", "run":
		bundle := flagValue(args, "bundle", "b")
		if bundle == "" {
			bundle = "."
		}
		strip(filepath.Join(bundle, "config.json"), func(doc map[string]any) bool {
			process, ok := doc["process"].(map[string]any)
			if !ok {
				return false
			}
			_, had := process["rlimits"]
			delete(process, "rlimits")
			return had
		})
	case "exec":
		if file := flagValue(args, "process", "p"); file != "" {
			strip(file, func(process map[string]any) bool {
				_, had := process["rlimits"]
				delete(process, "rlimits")
				return had
			})
		}
	}
	runc := os.Getenv("VAOP_REAL_RUNC")
	if runc == "" {
		runc = realRunc
	}
	if err := syscall.Exec(runc, append([]string{runc}, args...), os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-norlimit: exec %s: %v\n", runc, err)
		os.Exit(127)
	}
}

// subcommand is the first argument that is not a global flag (or a global flag's value).
func subcommand(args []string) string {
	withValue := map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") {
			return arg
		}
		if withValue[arg] {
			i++
		}
	}
	return ""
}

// flagValue finds --name value, --name=value, -s value among a command's arguments.
func flagValue(args []string, name, short string) string {
	for i, arg := range args {
		for _, prefix := range []string{"--" + name, "-" + name, "-" + short} {
			if arg == prefix && i+1 < len(args) {
				return args[i+1]
			}
			if strings.HasPrefix(arg, prefix+"=") {
				return strings.TrimPrefix(arg, prefix+"=")
			}
		}
	}
	return ""
}

// strip rewrites a JSON file in place when edit changed it; a file it cannot read is left to runc.
func strip(path string, edit func(map[string]any) bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	// UseNumber keeps 64-bit values (memory limits, capabilities masks) exact through the round trip.
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var doc map[string]any
	if decoder.Decode(&doc) != nil || !edit(doc) {
		return
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return
	}
	info, err := os.Stat(path)
	if err != nil {
		return
	}
	_ = os.WriteFile(path, out, info.Mode().Perm())
}
