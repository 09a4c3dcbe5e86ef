"""What every AIFX service shares: settings, logging, persistence, Redis, errors, token
verification and the gRPC server bootstrap."""
