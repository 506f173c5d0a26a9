"""Ground truth: what one real training step allocates (:mod:`~memsim.measure.profiler`) and how sparse its
saved activations are (:mod:`~memsim.measure.sparsity`)."""
