package exchange_test

import (
	"fmt"
	"log"
	"time"

	"github.com/keyward/keyward/agent/exchange"
)

// The agent's side of one request: parse, judge, sign.
func Example() {
	key, err := exchange.NewKey(exchange.Credential{
		Exchange: exchange.Binance,
		KeyID:    "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
		Secret:   []byte("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer key.Destroy()

	// What the trading process sent over the socket.
	req := &exchange.Request{
		Method: exchange.POST,
		Host:   "api.binance.com",
		Path:   "/api/v3/order",
		Body:   []byte("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000"),
	}
	p, err := exchange.Parse(exchange.Binance, req)
	if err != nil {
		log.Fatal(err) // refused: malformed or ambiguous
	}
	// Policy looks at the method, path, parameters and symbols.
	if len(p.FundParams) > 0 {
		log.Fatalf("fund-movement parameters %q on an order rule", p.FundParams)
	}
	fmt.Println(p.Method, p.Path, p.Symbols)

	s, err := exchange.Sign(key, p, time.UnixMilli(1700000000000), 0)
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range s.Headers {
		fmt.Printf("%s: %s\n", h.Name, h.Value)
	}
	fmt.Printf("%s\n", s.Body)
	// Output:
	// POST /api/v3/order [BTCUSDT]
	// X-MBX-APIKEY: vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A
	// Content-Type: application/x-www-form-urlencoded
	// timestamp=1700000000000&symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000&recvWindow=10000&signature=5c3f694584c6e567df0c409bca387065583d56dfa37f1485c4937ad0ccf6986d
}

// A request that hides a second symbol parameter is refused.
func ExampleParse_refused() {
	_, err := exchange.Parse(exchange.Binance, &exchange.Request{
		Method: exchange.GET,
		Host:   "api.binance.com",
		Path:   "/api/v3/openOrders",
		Query:  "symbol=BTCUSDT&Symbol=ETHUSDT",
	})
	fmt.Println(err)
	// Output:
	// exchange: binance request parameter: "Symbol" appears twice (also as "symbol"); send each parameter once
}
