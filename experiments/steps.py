"""The train step every program here runs, and the host-side refresh plan.

One step serves every optimizer of ``experiments.optimizer_table`` and the
tensor-wise fast path: the optimizers share Optax's extra-arguments contract,
so the step always passes ``grad_fn`` (and ``fisher_fn`` when the table says
the optimizer ranks by the Fisher), and each optimizer ignores what it does
not use.

BatchNorm and SAM: the step runs the model once at ``w`` in train mode; that
pass gives the loss, the gradient and the new model state (running
statistics). The perturbed pass inside ``grad_fn`` (at ``w + eps``) also
normalises with batch statistics, but its model state is discarded, so
running statistics only ever come from unperturbed passes.

The cheaper ascents (``experiments.ascents``, docs/efficient.md):

* Sub-batch ascent (``ascent_batch_fraction`` f < 1): the first gradient,
  which only sets the direction of ``eps`` (and feeds SSAM's mask stage), is
  taken on the first ``round(f * B)`` examples of the batch (of the global
  batch: under data parallelism, the first devices' rows); ``grad_fn``, the
  gradient at ``w + eps`` the base optimizer consumes, on the whole batch.
  The running statistics, the loss and the logits come from the first pass,
  at ``w`` on those examples (the trainer's accuracy counts them only), so
  the statistics still describe the unperturbed model. A step that does not
  ascend (``ascend=False``) takes its one gradient on the whole batch.
* Scheduled ascents and LookSAM: on a step with ``ascend=False`` the
  optimizer does not call ``grad_fn``; the step is SGD's.
* MSAM (:class:`ssam_jax.MomentumSAM`): the one gradient of the step is
  taken at ``optimizer.perturbed_params(opt_state, params)``, ``w`` moved
  along the momentum; no gradient at ``w`` is computed. That pass is the
  step's only one: the running statistics, the loss and the logits come from
  the perturbed model on the whole batch.

Fisher (SSAM-F): per-example losses use the model in eval mode, with the
current running statistics. Train mode is ill-defined for one example (its
batch variance is zero), and the running statistics are what the model uses
at test time.

The step is not jitted, sharded or donated here: the trainer, the benchmarks
and the analyses do that as they need.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

import ssam_jax

PyTree = Any
Batch = dict[str, jax.Array]


class LossFns(NamedTuple):
  """The losses a train step needs.

  Attributes:
    batch_loss: ``(params, model_state, batch) -> (loss, (model_state,
      logits))``, the mean loss of the batch and the model state after the
      pass (``model_state`` may be ``None`` for stateless models).
    example_loss: ``(params, model_state, example) -> loss`` of one example,
      for the empirical Fisher; ``None`` when no optimizer needs it.
  """

  batch_loss: Callable[..., tuple[jax.Array, tuple[PyTree, jax.Array]]]
  example_loss: Optional[Callable[..., jax.Array]] = None


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def eval_mode_losses(model, params, batch_stats, images: jax.Array,
                     labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-example cross-entropy and logits of a Flax linen model in eval mode.

  BatchNorm normalises with the running statistics ``batch_stats``, as at
  test time: the loss is a deterministic function of the parameters. The
  Fisher's example loss, evaluation and the analyses' loss all use it.
  """
  logits = model.apply({"params": params, "batch_stats": batch_stats}, images,
                       train=False)
  return cross_entropy(logits, labels), logits


def flax_loss_fns(model, image_key: str = "image",
                  label_key: str = "label") -> LossFns:
  """Cross-entropy losses of a Flax linen model with BatchNorm statistics.

  ``model_state`` is the ``batch_stats`` collection: the batch loss runs in
  train mode and returns the updated statistics, the example loss runs in
  eval mode (:func:`eval_mode_losses`, see the module docstring).
  """

  def batch_loss(params, batch_stats, batch):
    logits, mutated = model.apply(
        {"params": params, "batch_stats": batch_stats}, batch[image_key],
        train=True, mutable=["batch_stats"])
    loss = cross_entropy(logits, batch[label_key]).mean()
    return loss, (mutated["batch_stats"], logits)

  def example_loss(params, batch_stats, example):
    losses, _ = eval_mode_losses(model, params, batch_stats,
                                 example[image_key][None],
                                 example[label_key][None])
    return losses[0]

  return LossFns(batch_loss, example_loss)


def stateless_loss_fns(loss: Callable[[PyTree, Batch], jax.Array],
                       example_loss: Optional[Callable] = None) -> LossFns:
  """``LossFns`` of ``loss(params, batch)`` for models without state.

  ``example_loss(params, example)``, if given, is the loss of one example
  (the Fisher's); the model state is ``None`` and the logits are not kept.
  """

  def batch_loss(params, model_state, batch):
    return loss(params, batch), (model_state, None)

  wrapped_example_loss = None
  if example_loss is not None:
    wrapped_example_loss = lambda params, _, example: example_loss(params, example)
  return LossFns(batch_loss, wrapped_example_loss)


class StepOutput(NamedTuple):
  """What a train step returns.

  Attributes:
    params: after the update.
    opt_state: after the update.
    model_state: after the step's first pass (see the module docstring).
    loss: the mean loss of that pass.
    logits: of that pass: the first ``len(logits)`` examples of the batch.
    grads: the first gradient, at ``w`` (of the sub-batch with ``f < 1``);
      for MSAM, which takes none, ``eps`` itself (``experiments.radius``
      reads either).
  """

  params: PyTree
  opt_state: optax.OptState
  model_state: PyTree
  loss: jax.Array
  logits: Optional[jax.Array]
  grads: PyTree = None


def sub_batch(batch: Batch, fraction: float) -> Batch:
  """The first ``round(fraction * B)`` (at least one) examples of ``batch``."""
  size = max(1, round(fraction * len(jax.tree.leaves(batch)[0])))
  return jax.tree.map(lambda x: x[:size], batch)


def _owns_schedule(opt_state: optax.OptState, kinds: tuple) -> bool:
  is_kind = lambda x: isinstance(x, kinds)
  return any(map(is_kind, jax.tree.leaves(opt_state, is_leaf=is_kind)))


def make_train_step(loss_fns: LossFns, optimizer: optax.GradientTransformationExtraArgs,
                    *, num_fisher_samples: int = 0, fisher_chunk_size: int = 32,
                    fisher_unroll: int | bool = 1,
                    ascent_batch_fraction: float = 1.0) -> Callable[..., StepOutput]:
  """Builds ``step(params, opt_state, model_state, batch, *, <static>)``.

  Args:
    loss_fns: the losses.
    optimizer: any optimizer whose ``update`` takes (or ignores) ``grad_fn``
      and ``fisher_fn``: ``optax.with_extra_args_support(...)``,
      :func:`ssam_jax.sam`, :func:`ssam_jax.ssam` and the ascents that wrap
      them; or a :class:`ssam_jax.MomentumSAM`, which takes the gradient at
      its perturbed point and no ``grad_fn``.
    num_fisher_samples: ``N_F`` > 0 passes a ``fisher_fn`` over the first
      ``N_F`` examples of the batch (SSAM-F); 0 passes none.
    fisher_chunk_size: examples per vectorised chunk of the Fisher.
    fisher_unroll: ``unroll`` of :func:`ssam_jax.empirical_fisher`.
    ascent_batch_fraction: ``f`` in ``(0, 1]``: the first gradient is taken
      on the first ``round(f * B)`` examples of the batch (see the module
      docstring); 1 takes it on the whole batch.

  Returns:
    The step. Its static keyword arguments (``RefreshPlan``): ``perturbed``
    (one bool per params leaf) takes the first gradient of those leaves
    only, the tensor-wise fast path; ``refresh`` (a bool, SSAM only) says
    whether this step refreshes the mask, ``None`` leaves it to the
    optimizer's own schedule; ``ascend`` (a bool, for an ascent schedule
    built with ``every="manual"``) says whether this step takes the ascent.
  """
  if num_fisher_samples and loss_fns.example_loss is None:
    raise ValueError("num_fisher_samples > 0 needs loss_fns.example_loss.")
  fraction = ascent_batch_fraction
  if isinstance(fraction, bool) or not 0 < fraction <= 1:
    raise ValueError(
        f"ascent_batch_fraction must be in (0, 1], got {fraction!r}.")
  one_gradient = isinstance(optimizer, ssam_jax.MomentumSAM)
  if one_gradient and fraction != 1:
    raise ValueError("ascent_batch_fraction < 1 needs a first gradient; msam "
                     "takes none.")

  def step(params, opt_state, model_state, batch, *, perturbed=None,
           refresh=None, ascend=None) -> StepOutput:
    def loss_and_aux(p, examples):
      return loss_fns.batch_loss(p, model_state, examples)

    def perturbed_grad(p):  # the model state of this pass is discarded
      return jax.grad(lambda q: loss_and_aux(q, batch)[0])(p)

    extra_args = {} if refresh is None else {"refresh": refresh}
    if ascend is not None:
      extra_args["ascend"] = ascend
    if num_fisher_samples:
      extra_args["fisher_fn"] = ssam_jax.empirical_fisher(
          lambda p, example: loss_fns.example_loss(p, model_state, example),
          batch, num_samples=num_fisher_samples, chunk_size=fisher_chunk_size,
          unroll=fisher_unroll)
    if one_gradient:
      if perturbed is not None:
        raise ValueError("perturbed (the fast path) shortens a first "
                         "gradient; msam takes none.")
      point = optimizer.perturbed_params(opt_state, params)
      (loss, (new_model_state, logits)), grads = jax.value_and_grad(
          loss_and_aux, has_aux=True)(point, batch)
      updates, opt_state = optimizer.update(grads, opt_state, params,
                                            **extra_args)
      return StepOutput(optax.apply_updates(params, updates), opt_state,
                        new_model_state, loss, logits,
                        jax.tree.map(jnp.subtract, point, params))

    first_batch = batch
    if fraction != 1 and ascend is not False:
      # Without a static ascend a schedule could feed this gradient to the
      # base optimizer; LookSAM always does between its ascents.
      kinds = ((ssam_jax.LookSAMState,) if ascend else
               (ssam_jax.LookSAMState, ssam_jax.ScheduledAscentState))
      if _owns_schedule(opt_state, kinds):
        raise ValueError(
            "ascent_batch_fraction < 1 needs the whole batch's gradient on "
            "updates without the ascent: pass a static ascend to a schedule "
            "built with every='manual'; LookSAM takes none.")
      first_batch = sub_batch(batch, fraction)
    value_and_grad = (
        jax.value_and_grad(loss_and_aux, has_aux=True) if perturbed is None
        else ssam_jax.value_and_partial_grad(loss_and_aux, perturbed,
                                             has_aux=True))
    (loss, (new_model_state, logits)), grads = value_and_grad(params,
                                                              first_batch)
    if perturbed is not None:  # the library checks the update needs no more
      extra_args["grads_wrt"] = perturbed
    updates, opt_state = optimizer.update(grads, opt_state, params,
                                          grad_fn=perturbed_grad, **extra_args)
    return StepOutput(optax.apply_updates(params, updates), opt_state,
                      new_model_state, loss, logits, grads)

  return step


class RefreshPlan:
  """The static arguments of each step: refresh, ascent and fast path.

  When the caller owns the refresh schedule (``optimizer_table.Built.
  host_refresh_every``), whether step ``t`` refreshes the mask
  (``t % mask_update_every == 0``, the optimizer's own count) is decided on
  the host and passed as a static ``refresh``: two compiled steps instead of
  a ``lax.cond`` in one. XLA:CPU runs convolutions inside control flow
  several times slower (see :mod:`ssam_jax.workarounds`), and an untaken
  branch is not free either. When it owns the ascent schedule
  (``Built.host_ascent``), whether step ``t`` ascends is passed as a static
  ``ascend`` in the same way.

  With the fast path, the perturbed tensors are static for ``jit`` (one
  compilation per distinct set), so they are read from the optimizer state
  after every mask refresh and after the first step this plan sees (of a
  fresh or resumed run). A fixed mask is read once. Those steps, and the
  steps without the ascent (whose base optimizer consumes the first
  gradient), take the first gradient of every tensor.
  """

  def __init__(self, mask_update_every: Optional[int], fast_path: bool = False,
               ascends: Optional[Callable[[int], bool]] = None):
    """``mask_update_every=None``: no static refresh (a dense optimizer, a
    fixed mask, or a schedule the optimizer owns); ``ascends(step)``: whether
    the step whose optimizer count is ``step`` ascends, or None: no static
    ``ascend``."""
    self.mask_update_every = mask_update_every
    self.fast_path = fast_path
    self.ascends = ascends
    self._perturbed = None  # not known until a full-gradient step

  def step_kwargs(self, step: int) -> dict:
    """The static keyword arguments of the step whose optimizer count is ``step``."""
    kwargs, full_gradient = {}, self._perturbed is None
    if self.mask_update_every is not None:
      kwargs["refresh"] = step % self.mask_update_every == 0
      full_gradient = full_gradient or kwargs["refresh"]
    if self.ascends is not None:
      kwargs["ascend"] = bool(self.ascends(step))
      full_gradient = full_gradient or not kwargs["ascend"]
    if self.fast_path:
      kwargs["perturbed"] = None if full_gradient else self._perturbed
    return kwargs

  def after_step(self, opt_state: optax.OptState, step_kwargs: dict) -> None:
    """Reads the perturbed tensors after the first step and each refresh."""
    if self.fast_path and (self._perturbed is None
                           or step_kwargs.get("refresh")):
      self._perturbed = ssam_jax.perturbed_tensors(opt_state)
