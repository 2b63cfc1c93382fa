"""Training program for Sparse SAM experiments, in the layout of the Flax examples.

Modules: ``configs/`` (ml_collections configs), ``input_pipeline`` (tf.data/tfds,
validation split), ``array_pipeline`` (the same Fashion-MNIST examples in NumPy,
without TensorFlow; ``tf_random``), ``datasets`` (what both share, and the choice
between them), ``models`` (flax.linen), ``optimizers`` (SGD/SAM/SSAM from
the config), ``steps`` (the one train step and the refresh plan), ``train``
(the training loop), ``checkpointing`` (orbax, with checksums),
``config_validation``, ``workdir_guard``, ``divergence`` and ``errors`` (a
run's guards and their one-line errors), ``reporting`` (metrics.jsonl,
TensorBoard, console), ``main`` (CLI), ``distributed`` (multi-process data
parallelism), ``benchmark`` (input pipeline vs. train step throughput),
``sweep`` and ``statistics_report`` (the evidence sweeps; a record's
``early_stopping``, ``radius`` and ``provenance`` fields, ``run_record``, and
``rerun``), ``convergence``
(the Theorems 1-2 check), ``tiny_mlp`` (the demo and test model) and
``analysis/`` (the paper's figures).
"""
