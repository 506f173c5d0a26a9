"""Backends: what a device's kernels allocate beyond the tensors every backend shares.

A trace holds the storages of a step and their liveness, which every backend shares, apart from its
:class:`~memsim.backends.calls.KernelCall` s, the ops whose scratch (and, for a few kernels, output sizes)
depend on the kernels that run them. The host's CPU kernels are measured by probes
(:mod:`memsim.backends.host`).
"""
