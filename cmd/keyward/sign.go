package main

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/keyward/keyward/agent"
	"github.com/keyward/keyward/agent/exchange"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/client"
	"github.com/keyward/keyward/internal/tty"
	"github.com/keyward/keyward/store"
)

// Exchange credentials (docs/signing.md): put and rotate store one with
// --exchange and --api-key; the agent signs with it; keyward sign shows
// what the agent adds to a request.

// credentialFlags returns the exchange and API key id that --exchange and
// --api-key give, both "" for a plain secret.
func credentialFlags(c *cli.Context) (x, keyID string, err error) {
	x, keyID = c.String("exchange"), c.String("api-key")
	switch {
	case x == "" && keyID != "":
		return "", "", usagef("--api-key is for an exchange credential: give --exchange too")
	case x != "" && keyID == "":
		return "", "", usagef("--exchange needs --api-key, the key's public id as the exchange shows it")
	}
	return x, keyID, nil
}

// checkCredential returns the attributes to store with value, after
// checking that the exchange takes it; nil for a plain secret (x "").
func checkCredential(x, keyID string, value []byte) (*store.CredentialInfo, error) {
	if x == "" {
		return nil, nil
	}
	info, err := agent.CheckCredential(x, keyID, value)
	if err != nil {
		return nil, fmt.Errorf("the %s credential was refused, and nothing was stored: %w", x, err)
	}
	return info, nil
}

// readOKXCredential prompts for an OKX secret and passphrase at a
// terminal and returns them as the stored value, secret and passphrase on
// two lines.
func readOKXCredential(name string) ([]byte, error) {
	secret, err := tty.ReadHidden(fmt.Sprintf("API secret for %s (input hidden): ", name), store.MaxSecretSize)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	pass, err := tty.ReadHidden("API passphrase (input hidden): ", store.MaxSecretSize)
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	return exchange.Credential{Secret: secret, Passphrase: pass}.Value(), nil
}

func signCommand() *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "print what the agent adds to an exchange request, for scripts and debugging",
		ArgsUsage: "NAME METHOD URL",
		Description: "sign asks the running agent to sign the request METHOD URL (with --body) with the\n" +
			"exchange credential NAME and prints what to send: the headers to set, the final query\n" +
			"and body, and when the exchange stops accepting it. The request is written without its\n" +
			"authentication (API key, timestamp, signature: the agent adds them). For a WebSocket\n" +
			"login the METHOD is WS and the URL's path names it: wss://ws-api.binance.com/session.logon.\n" +
			"The caller needs the sign permission for the request (docs/policy.md). Nothing is sent.",
		Flags: []cli.Flag{
			socketFlag,
			&cli.StringFlag{Name: "body", Usage: "the request `BODY`, as it will be sent"},
			&cli.DurationFlag{Name: "recv-window", Usage: "Binance and Bybit: how long the exchange accepts the request (default: the exchange's)"},
			&cli.UintFlag{Name: "version", Usage: "sign with a given `VERSION` of the credential"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 3 {
				return usagef("sign takes a credential NAME, a METHOD and a URL, as in: keyward sign --body 'symbol=BTCUSDT&...' binance/mm POST https://api.binance.com/api/v3/order")
			}
			req, err := parseSignRequest(c.Args().Get(1), c.Args().Get(2), c.String("body"))
			if err != nil {
				return usagef("%v", err)
			}
			v := c.Uint("version")
			if v > 1<<32-1 {
				return usagef("--version %d is out of range", v)
			}
			req.Version, req.RecvWindow = uint32(v), c.Duration("recv-window")
			cl, _, err := dialAgent(c.Context, c)
			if err != nil {
				return err
			}
			defer cl.Close()
			s, err := cl.Sign(c.Context, c.Args().First(), req)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 1, ' ', 0)
			fmt.Fprintf(tw, "credential:\t%s version %d, %s API key %s\n", c.Args().First(), s.Version, s.Exchange, s.APIKey)
			for _, h := range s.Headers {
				fmt.Fprintf(tw, "header:\t%s: %s\n", h.Name, h.Value)
			}
			if s.Query != "" {
				fmt.Fprintf(tw, "query:\t%s\n", s.Query)
			}
			if len(s.Body) > 0 {
				fmt.Fprintf(tw, "body:\t%s\n", s.Body)
			}
			for _, p := range s.Params {
				fmt.Fprintf(tw, "param:\t%s=%s\n", p.Name, p.Value)
			}
			if !s.Expires.IsZero() {
				fmt.Fprintf(tw, "expires:\t%s\n", s.Expires.UTC().Format("2006-01-02T15:04:05.000Z"))
			}
			return tw.Flush()
		},
	}
}

// parseSignRequest reads a request from the command line: an HTTP method
// and URL, or WS and a URL whose path names the login or method.
func parseSignRequest(method, rawURL, body string) (client.SignRequest, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil {
		return client.SignRequest{}, fmt.Errorf("%q is not an absolute URL such as https://api.binance.com/api/v3/order", rawURL)
	}
	req := client.SignRequest{Method: strings.ToUpper(method), Host: strings.ToLower(u.Hostname()),
		Path: u.EscapedPath(), Query: u.RawQuery, Body: []byte(body)}
	if req.Method == exchange.WS {
		req.Path = strings.TrimPrefix(req.Path, "/")
	}
	return req, nil
}

// signRequestToCheck reads policy check's --request, --body and
// --exchange into the request the agent's policy would judge.
func signRequestToCheck(c *cli.Context, op policy.Op) (*exchange.Parsed, error) {
	if op != policy.OpSign {
		return nil, usagef("--request is for --op sign")
	}
	x := exchange.Exchange(c.String("exchange"))
	if _, ok := x.Info(); !ok {
		return nil, usagef("--request needs --exchange, the credential's exchange: one of %v", exchange.Exchanges())
	}
	method, rawURL, ok := strings.Cut(c.String("request"), " ")
	if !ok {
		return nil, usagef("--request %q is not \"METHOD URL\"", c.String("request"))
	}
	req, err := parseSignRequest(method, rawURL, c.String("body"))
	if err != nil {
		return nil, usagef("--request: %v", err)
	}
	parsed, err := exchange.Parse(x, &exchange.Request{Method: req.Method, Host: req.Host, Path: req.Path, Query: req.Query, Body: req.Body})
	if err != nil {
		return nil, fmt.Errorf("the agent would refuse this request before its policy: %w", err)
	}
	return parsed, nil
}
