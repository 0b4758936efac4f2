//go:build race

package agent_test

// raceEnabled: under the race detector the agent's per-connection work
// costs many times what it does in a real build, so tests of how it holds
// up under load measure the detector, not the agent.
const raceEnabled = true
