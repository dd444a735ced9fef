package vm

import (
	"os"
	"testing"

	"hearth/app/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }
