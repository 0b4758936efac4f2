package storetest_test

import (
	"testing"

	"github.com/keyward/keyward/store/storetest"
)

func TestMemBackend(t *testing.T) { storetest.Run(t, storetest.NewMemBackend()) }
