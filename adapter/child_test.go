package adapter_test

// childEnv, when set, turns the test binary into a reader process for the
// crash and failover tests; see runChild.
const childEnv = "DTEBRIDGE_ADAPTER_CHILD"

func runChild() int { return 2 }
