"""`python -m checks`: the preflight on its own, changing nothing (the checks live in gateway.preflight)."""
