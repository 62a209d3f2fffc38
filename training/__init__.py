"""Training side of AutoMoT: driving datasets, readers for real layouts, the staged trainer, the diffusion
(flow-matching) action refiner and the embedded-world data collector.

Submodules are imported lazily by their users so that e.g. ``training.refiner`` (needed at inference by the
agent) does not pull the trainer, TensorBoard or peft.
"""
