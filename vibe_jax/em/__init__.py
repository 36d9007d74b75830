"""The EM procedure: Sinkhorn E-step, gradient M-step, and the loop that alternates them."""
