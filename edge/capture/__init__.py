"""Camera capture: a reader thread per camera (reconnect with backoff) feeding a policy queue."""
