"""Triton kernels, each with a plain-torch reference (none yet: see the roadmap in the README)."""
