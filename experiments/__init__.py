"""Training program for Sparse SAM experiments, in the layout of the Flax examples.

Modules: ``configs/`` (ml_collections configs), ``input_pipeline`` (tf.data/tfds),
``models`` (flax.linen), ``optimizers`` (SGD/SAM/SSAM from the config),
``train`` (train/eval steps and loop), ``checkpointing`` (orbax),
``reporting`` (metrics.jsonl and TensorBoard), ``main`` (CLI), ``benchmark``
(input pipeline vs. train step throughput) and ``testing`` (test helpers).
"""
