package devpg

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// helperEnv makes the test binary act as another process using a cluster
// (see TestHelperProcess): "reuse" starts (or reuses) the cluster in
// $DEVPG_HELPER_DIR, queries it and stops; "hold" starts it, prints
// "ready" and waits until its stdin closes or it is killed.
const helperEnv = "DEVPG_HELPER"

// TestHelperProcess is not a test: it is the other process of the tests
// below.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := Start(ctx, os.Getenv("DEVPG_HELPER_DIR"), testLogger(t))
	if err != nil {
		t.Fatalf("helper Start: %v", err)
	}
	query(t, c)
	switch mode {
	case "reuse":
		if err := c.Stop(ctx); err != nil {
			t.Fatalf("helper Stop: %v", err)
		}
	case "hold":
		os.Stdout.WriteString("ready\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent goes
	}
}

// helper returns the command running the test binary as a helper process.
func helper(t *testing.T, mode, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "DEVPG_HELPER_DIR="+dir)
	return cmd
}

// A second process that reuses a running cluster and exits leaves the
// server running: the first process's open connection keeps working.
func TestSecondProcessLeavesClusterRunning(t *testing.T) {
	if _, err := FindBinDir(); err != nil {
		t.Skip(err)
	}
	dir := testDir(t)
	c := start(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	if out, err := helper(t, "reuse", dir).CombinedOutput(); err != nil {
		t.Fatalf("second process: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "reusing running postgres") {
		t.Fatalf("the second process did not reuse the server:\n%s", out)
	}

	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("the first process's connection after the second exited: %d, %v", one, err)
	}
	query(t, c)
	stop(t, c)
	if running, err := c.isRunning(ctx); err != nil || running {
		t.Fatalf("after the last user stopped: running = %v, %v", running, err)
	}
}

// A process that started the cluster and crashed leaves it usable: the
// next process reuses the server and, being its last live user, stops it.
func TestCrashedStarterLeavesClusterUsable(t *testing.T) {
	if _, err := FindBinDir(); err != nil {
		t.Skip(err)
	}
	dir := testDir(t)
	cmd := helper(t, "hold", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
				break
			}
		}
		for sc.Scan() { // drain so the helper never blocks on output
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("helper ended before starting the cluster")
		}
	case <-time.After(90 * time.Second):
		t.Fatal("helper did not start the cluster in time")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	c := start(t, dir)
	query(t, c)
	stop(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if running, err := c.isRunning(ctx); err != nil || running {
		t.Fatalf("the crashed starter's registration kept the server running: %v, %v", running, err)
	}
}
