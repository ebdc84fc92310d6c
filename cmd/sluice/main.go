// Command sluice is a terminal client for a Sluice server: log in, read
// records, page scopes, stream changes (resuming after any cut) and call
// any RPC with JSON. `sluice -h` lists the commands; package
// github.com/sluicehq/sluice/client/cli has the details.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicehq/sluice/client/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
