"""The randomized soak (`cold-assets soak`): real operations and faults, checked against a ledger."""
