// Command netprobe is the kind tier's network probe, run in Pods to see what a NetworkPolicy lets
// through:
//
//	netprobe dial HOST:PORT   connect within 3 s; print "open", "refused", "timeout" (what a
//	                          policy that drops looks like) or the error (exit 0, 1, 2 or 3)
//	netprobe serve PORT       accept connections on PORT forever, printing each one's source
//	                          address (something to reach)
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: netprobe dial HOST:PORT | netprobe serve PORT")
		os.Exit(64)
	}
	switch os.Args[1] {
	case "dial":
		os.Exit(dial(os.Args[2]))
	case "serve":
		serve(os.Args[2])
	default:
		fmt.Fprintf(os.Stderr, "netprobe: unknown command %q\n", os.Args[1])
		os.Exit(64)
	}
}

func dial(address string) int {
	conn, err := net.DialTimeout("tcp", address, 3*time.Second)
	switch {
	case err == nil:
		conn.Close()
		fmt.Println("open")
		return 0
	case errors.Is(err, syscall.ECONNREFUSED):
		fmt.Println("refused")
		return 1
	case isTimeout(err):
		fmt.Println("timeout")
		return 2
	default:
		fmt.Printf("error: %v\n", err)
		return 3
	}
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

func serve(port string) {
	listener, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "netprobe: %v\n", err)
		os.Exit(1)
	}
	for {
		conn, err := listener.Accept()
		if err == nil {
			fmt.Println("from", conn.RemoteAddr()) // which source address a policy sees
			conn.Close()
		}
	}
}
