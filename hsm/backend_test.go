package hsm_test

import (
	"github.com/keyward/keyward/hsm"
	"github.com/keyward/keyward/store"
)

// A Token is a store.Backend, in cgo and non-cgo builds alike.
var _ store.Backend = (*hsm.Token)(nil)
