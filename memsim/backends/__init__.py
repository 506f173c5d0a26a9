"""Backends: what a device's kernels allocate beyond the tensors every backend shares.

A trace holds the storages of a step and their liveness, which every backend shares, apart from its
:class:`~memsim.backends.calls.KernelCall` s: the ops whose scratch (and, for a few kernels, output sizes)
depend on the kernels that run them. The host's CPU kernels are measured when tracing
(:mod:`memsim.backends.host`); :func:`memsim.backends.views.for_backend` re-costs a trace for another backend
(x86 CPU, aarch64 CPU, CUDA) and thread count, so that a prediction is for the device the user names.
"""
