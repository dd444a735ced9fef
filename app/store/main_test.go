package store_test

import (
	"os"
	"testing"

	"hearth/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }
