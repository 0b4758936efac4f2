package hsm

// WithEchoOff is withEchoOff, for tests on a pseudo-terminal.
var WithEchoOff = withEchoOff
