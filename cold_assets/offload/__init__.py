"""The exactly-once offload: the protocol (plan, read, write, commit, reconcile) and its bookkeeping in snapshot summaries."""
