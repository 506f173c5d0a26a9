"""Real training with compressed saved activations: the autograd hooks (:mod:`~memsim.runtime.hooks`,
``memsim.compressed_activations``) and the stored forms they use (:mod:`~memsim.runtime.store`)."""
