"""Reliability tooling shared by the fault-injection tests and the soak: faults, processes, ledger."""
