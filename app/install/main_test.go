package install

import (
	"os"
	"testing"

	"hearth/app"
	"hearth/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var operator = app.Actor{Kind: app.ActorUser, Name: "admin"}
