// Command etcd is the upstream etcd server entry point (etcd's own main.go does only this).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
