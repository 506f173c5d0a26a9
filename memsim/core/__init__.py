"""The data everything else is built on, free of torch: errors, choices, dtypes, units, categories, the
liveness timeline and the :class:`~memsim.core.trace.Trace`."""
