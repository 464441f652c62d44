"""Training: samplers, optimisers, and the resumable loop with periodic evaluation."""
