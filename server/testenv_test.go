package server

import (
	"testing"

	"github.com/sluicehq/sluice/internal/testenv"
)

func testenvNATS(t *testing.T) *testenv.NATS { return testenv.StartNATS(t) }
