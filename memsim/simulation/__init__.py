"""From a trace to a verdict on a device: policies re-cost the timeline, the allocator model replays it, the
device catalog says what is left for it, and :func:`~memsim.simulation.simulate.simulate` reports."""
