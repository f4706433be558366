"""Executors: run workloads for real (torch) and on fake tensors (the traced verifier).

Importing this package needs torch; memsim's analytic core never does.
"""
