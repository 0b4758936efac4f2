package client_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/keyward/keyward/client"
)

// A trading process fetches its exchange key from the local agent.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()

	c, err := client.Dial(ctx, "") // $KEYWARD_SOCKET, else /run/keyward/agent.sock
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	key, err := c.Get(ctx, "binance/mm-prod")
	switch {
	case errors.Is(err, client.ErrDenied):
		log.Fatal("this process is not allowed binance/mm-prod: check the agent's policy")
	case err != nil:
		log.Fatal(err)
	}
	defer key.Wipe()
	sign := func(secret []byte) {} // an HMAC signer, for example
	sign(key.Bytes())
}
