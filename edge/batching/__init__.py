"""Dynamic batching across cameras under the latency budget, and the straggler fallback."""
