"""E-step: clean pseudo-labels by entropy-regularised optimal transport (ott-jax Sinkhorn).

  Q = argmax_Q <Q, ln P> + (1/lambda) H(Q),  Q 1 = 1/N,  Q^T 1 = prior

is Sinkhorn with cost -ln P and epsilon = 1/lambda (set explicitly: ott's default epsilon
is relative to the cost). The pseudo-label of sample i is argmax_l Q[i, l]; with the dual
potential g this is argmax_l (ln P[i, l] + g_l), so the labels need no N x C plan.

Late in EM with many classes the problem is peaked (lambda ln P spans hundreds between
classes) and Sinkhorn's coordinate ascent crawls: 30,000 plain iterations reach only 2e-4
on the benchmark's N = 5,000, C = 1,000 problem. The converged solver therefore first runs
L-BFGS (optax) on the semi-dual, a smooth concave function of the C numbers g whose
gradient is the column-marginal error, then certifies g on the exact plan and, where L-BFGS
stopped short, finishes with ott's Sinkhorn from (f(g), g) in kernel mode (two
matrix-vector products per iteration over the plan at the start, no exp: see
`_kernel_mode_sinkhorn`). The previous E-step's g (`init_g`) warm-starts both.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import acceleration, sinkhorn

# The reference runs max_iter + 1 Sinkhorn iterations whatever the convergence.
REFERENCE_FIXED_ITERATIONS = 10_001


class SinkhornResult(NamedTuple):
  iterations: jax.Array  # Sinkhorn iterations (both attempts when momentum fell back)
  converged: jax.Array
  marginal_error: jax.Array  # L1 error of the column marginals at the end
  # (C,) the column (dual) potential g: the pseudo-labels are argmax_l (ln P[i, l] + g_l),
  # softmax_l(ln P[i, l] + g_l) is the class-balanced posterior vibe_jax.relabel scores
  # with, and the next E-step starts from it (`init_g`).
  g: jax.Array
  semi_dual_steps: jax.Array  # L-BFGS steps on g before Sinkhorn
  # Of `iterations`, those run in kernel mode (two matrix-vector products each, no exp; see
  # _kernel_mode_sinkhorn); the others ran in ott's log domain.
  kernel_iterations: jax.Array


@functools.partial(
    jax.jit,
    static_argnames=(
        "threshold",
        "max_iterations",
        "fixed_iterations",
        "adaptive_momentum",
        "semi_dual_steps",
    ),
)
def sinkhorn_pseudo_labels(
    ln_p: jax.Array,
    prior: jax.Array,
    lam: float | jax.Array = 25.0,
    *,
    valid: jax.Array | None = None,
    threshold: float = 1e-4,
    max_iterations: int = 10_001,
    fixed_iterations: bool = False,
    adaptive_momentum: bool = True,
    semi_dual_steps: int = 2_000,
    init_g: jax.Array | None = None,
) -> tuple[jax.Array, SinkhornResult]:
  """Pseudo-labels (N,) int32 from ln P (N, C) and the class prior (C,), plus solver stats.

  `fixed_iterations=True` reproduces the reference exactly: 10,001 plain iterations from
  zero potentials, no convergence test (`init_g` is refused there). Otherwise the solve
  stops once the L1 marginal error is < `threshold`: up to `semi_dual_steps` L-BFGS steps
  on the semi-dual (0: none), then ott Sinkhorn from their g for up to `max_iterations`.
  `adaptive_momentum` runs that Sinkhorn with ott's over-relaxation (momentum estimated
  after 50 iterations); where it diverges (seen at C >= 100) a plain solve restarts from the
  same point and the iterations add up.
  `init_g` (C,): the previous E-step's `SinkhornResult.g`, a warm start (ln P drifts little
  between E-steps); None starts from zero potentials.
  `valid` (N,) bool marks real rows when N was padded to divide over devices: padded rows
  get zero mass, which leaves the potentials of the real problem unchanged.
  A stop-gradient computation: nothing differentiates through it.
  """
  ln_p = jax.lax.stop_gradient(ln_p.astype(jnp.float32))
  prior = jax.lax.stop_gradient(prior.astype(jnp.float32))
  num_samples, num_classes = ln_p.shape
  geom = geometry.Geometry(cost_matrix=-ln_p, epsilon=1.0 / lam)
  weights = jnp.ones((num_samples,)) if valid is None else valid.astype(jnp.float32)
  problem = linear_problem.LinearProblem(geom, a=weights / weights.sum(), b=prior / prior.sum())
  if fixed_iterations:
    if init_g is not None:
      raise ValueError(
          "init_g: the reference-exact E-step (estep.fixed_iterations=True) starts from zero "
          "potentials, as the reference does; pass init_g=None."
      )
    solver = sinkhorn.Sinkhorn(
        threshold=-1.0,
        inner_iterations=1,
        min_iterations=REFERENCE_FIXED_ITERATIONS,
        max_iterations=REFERENCE_FIXED_ITERATIONS,
    )
    g, iterations, converged, marginal_error = _solve(solver, problem, None, threshold)
    zero = jnp.zeros((), jnp.int32)
    return _labels(ln_p, g), SinkhornResult(iterations, converged, marginal_error, g, zero, zero)
  if init_g is None:
    g = jnp.zeros((num_classes,), jnp.float32)
  else:
    if init_g.shape != (num_classes,):
      raise ValueError(
          f"init_g has shape {init_g.shape}; it must be the previous E-step's g of shape "
          f"({num_classes},) for this ln P of shape {ln_p.shape}."
      )
    g = jax.lax.stop_gradient(init_g.astype(jnp.float32))
    g = jnp.where(jnp.all(jnp.isfinite(g)), g, 0.0)  # a diverged earlier solve: start cold
  steps = jnp.zeros((), jnp.int32)
  if semi_dual_steps:
    g, steps = _semi_dual_lbfgs(problem, g, threshold, semi_dual_steps)
  options = dict(threshold=threshold, max_iterations=max_iterations)
  if init_g is None and not semi_dual_steps:
    # Cold: ott's own initialiser (zero potentials) in the log domain, as the reference.
    solve = lambda **extra: _solve(sinkhorn.Sinkhorn(**options, **extra), problem, None, threshold)
    g, iterations, converged, marginal_error = (
        solve(momentum=acceleration.Momentum(start=50)) if adaptive_momentum else solve()
    )
    if adaptive_momentum:
      # The momentum estimate can overshoot on peaked problems with many classes and diverge,
      # which ott still reports as converged: then plain Sinkhorn from the same start.
      g, extra, converged, marginal_error = jax.lax.cond(
          converged, lambda: (g, jnp.zeros_like(iterations), converged, marginal_error), solve
      )
      iterations = iterations + extra
    zero = jnp.zeros((), jnp.int32)
    return _labels(ln_p, g), SinkhornResult(iterations, converged, marginal_error, g, steps, zero)
  g, iterations, in_kernel, converged, marginal_error = _kernel_mode_sinkhorn(
      problem, g, adaptive_momentum=adaptive_momentum, **options
  )
  return _labels(ln_p, g), SinkhornResult(
      iterations, converged, marginal_error, g, steps, in_kernel
  )


@jax.tree_util.register_pytree_node_class
class _AbsorbedKernel(geometry.Geometry):
  """A Gibbs kernel given as a matrix, applied as it is. ott's `apply_kernel` raises the
  kernel to epsilon / eps on every call, an N x C power per product even for a constant
  epsilon (the only kind used here)."""

  def apply_kernel(self, vec: jax.Array, eps=None, axis: int = 0) -> jax.Array:
    del eps  # the kernel already holds this problem's epsilon
    return self._kernel_matrix @ vec if axis == 1 else vec @ self._kernel_matrix


# Kernel-mode Sinkhorn iterations between two absorptions of the potentials into the kernel.
KERNEL_SEGMENT = 100
# Kernel mode only where every column of the plan holds at least this fraction of its target.
KERNEL_MIN_MASS_RATIO = 1e-15


def _kernel_mode_sinkhorn(
    problem: linear_problem.LinearProblem,
    g: jax.Array,
    *,
    threshold: float,
    max_iterations: int,
    adaptive_momentum: bool,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
  """(g, iterations, of which in kernel mode, converged, error): ott Sinkhorn from g, in
  kernel mode with the potentials absorbed into the kernel every `KERNEL_SEGMENT`
  iterations (up to `max_iterations` in whole segments).

  A log-domain iteration evaluates exp on all N C entries twice, which on a CPU costs
  several times the two reads of ln P it needs (benchmarks/streaming.py measures both). Here
  one exp pass builds K = the plan at (f(g), g) (Schmitzer's absorption) and each iteration
  is two matrix-vector products over K, the scalings starting at 1. The scalings,
  exp((g - g_start) / eps), and K's entries stay in float32's range only while g moves less
  than ~87 eps from where K was built, hence the segments. Each segment starts by measuring
  the column-marginal error of (f(g), g) in the log domain, so the error returned and the
  stop are exact, whatever the kernel saw. With momentum, a kernel-mode segment is redone
  without it where it ends non-finite or above its starting error; where the plain one does
  too, or a column has no mass in float32, the next segment runs in the log domain.
  """
  segment = min(KERNEL_SEGMENT, max_iterations)
  kernel_solver = lambda **extra: sinkhorn.Sinkhorn(
      lse_mode=False, threshold=threshold, max_iterations=segment, **extra
  )
  log_solver = lambda **extra: sinkhorn.Sinkhorn(
      threshold=threshold, max_iterations=segment, **extra
  )
  momentum = dict(momentum=acceleration.Momentum(start=50))
  accelerated = lambda solve: [lambda: solve(**momentum)] if adaptive_momentum else []

  def kernel_segment(f, potential, error):
    """(step of g, iterations, of which in kernel mode, failed): one segment in kernel mode
    from (f, potential), whose error is `error`. K is built here, inside the branch, so it
    never coexists with the log domain's N x C scratch."""
    kernel = problem.geom.transport_from_potentials(f, potential)
    geom = _AbsorbedKernel(kernel_matrix=kernel, epsilon=problem.geom.epsilon)
    absorbed = linear_problem.LinearProblem(geom, a=problem.a, b=problem.b)
    ones = (jnp.ones_like(f), jnp.ones_like(potential))
    solve = lambda **extra: _step(_solve(kernel_solver(**extra), absorbed, ones, threshold))
    step, count, end_error = _first_good(accelerated(solve) + [solve], error)
    ok = _improved(step, end_error, error)
    return jnp.where(ok, step, 0.0), count, count, ~ok

  def log_segment(f, potential, error):
    solve = lambda **extra: _step(
        _solve(log_solver(**extra), problem, (f, potential), threshold), start=potential
    )
    step, count, _ = _first_good(accelerated(solve) + [solve], error)
    return step, count, jnp.zeros_like(count), jnp.zeros((), bool)

  def body(carry):
    potential, iterations, in_kernel, _, _, kernel_failed = carry
    f = _row_potential(problem, potential)
    columns = problem.geom.marginal_from_potentials(f, potential, axis=0)
    error = jnp.sum(jnp.abs(columns - problem.b))
    # Kernel mode needs every column's mass within float32's range (a column whose entries
    # of K all underflowed would get the scaling b_j instead of b_j / 0), and runs again
    # after a log-domain segment only.
    use_kernel = (jnp.min(columns / problem.b) > KERNEL_MIN_MASS_RATIO) & ~kernel_failed
    stop = (error < threshold) | (iterations + segment > max_iterations)
    zero = jnp.zeros_like(iterations)
    step, count, count_in_kernel, failed = jax.lax.cond(
        stop,
        lambda: (jnp.zeros_like(potential), zero, zero, jnp.zeros((), bool)),
        lambda: jax.lax.cond(
            use_kernel,
            lambda: kernel_segment(f, potential, error),
            lambda: log_segment(f, potential, error),
        ),
    )
    stop = stop | ~jnp.all(jnp.isfinite(step))  # the log domain failed too: keep the last g
    potential = jnp.where(stop, potential, potential + step)
    return potential, iterations + count, in_kernel + count_in_kernel, error, stop, failed

  zero = jnp.zeros((), jnp.int32)
  no = jnp.zeros((), bool)
  start = (g, zero, zero, jnp.array(jnp.inf, g.dtype), no, no)
  g, iterations, in_kernel, error, _, _ = jax.lax.while_loop(lambda carry: ~carry[4], body, start)
  return g, iterations, in_kernel, jnp.isfinite(error) & (error < threshold), error


def _improved(step, end_error, error):
  return jnp.all(jnp.isfinite(step)) & jnp.isfinite(end_error) & (end_error < error)


def _first_good(attempts, error):
  """(step, iterations, end error) of the first attempt that ends finite and below `error`
  (the last one's otherwise), running each only where the ones before it failed;
  iterations add up."""
  step, count, end_error = attempts[0]()
  for attempt in attempts[1:]:
    step, more, end_error = jax.lax.cond(
        _improved(step, end_error, error),
        lambda: (step, jnp.zeros_like(count), end_error),
        attempt,
    )
    count = count + more
  return step, count, end_error


def _step(result, start=0.0):
  """(step of g from `start`, iterations, error) of a `_solve` result."""
  g, iterations, _, error = result
  return g - start, iterations, error


def _row_potential(problem: linear_problem.LinearProblem, g: jax.Array) -> jax.Array:
  """f = the soft c-transform of g (ott's own row update): with (f(g), g) the rows of the plan
  sum to 1/N exactly, so only the column marginals are off. Padded rows (a = 0) get -inf."""
  zeros = jnp.zeros(problem.a.shape, g.dtype)
  return problem.geom.update_potential(zeros, g, jnp.log(problem.a), axis=1)


def _semi_dual_lbfgs(
    problem: linear_problem.LinearProblem, g: jax.Array, threshold: float, max_steps: int
) -> tuple[jax.Array, jax.Array]:
  """(g, steps): L-BFGS on the negated semi-dual -(<b, g> + <a, f(g)>), a smooth convex
  function of C numbers whose gradient P^T 1 - b is the column-marginal error, so each step
  costs about one Sinkhorn iteration and the L1 norm of the gradient is the same error
  Sinkhorn stops on. Stops below `threshold`, at `max_steps`, or on a non-finite value."""

  def value_and_row_potential(potential):
    f = _row_potential(problem, potential)
    row_term = jnp.sum(jnp.where(problem.a > 0, problem.a * f, 0.0))
    return -(jnp.dot(problem.b, potential) + row_term), f

  @jax.custom_vjp
  def objective(potential):
    return value_and_row_potential(potential)[0]

  def forward(potential):
    value, f = value_and_row_potential(potential)
    return value, (potential, f)

  def backward(residuals, cotangent):
    # The gradient by hand, one pass over ln P: autodiff would keep an N x C softmax.
    potential, f = residuals
    columns = problem.geom.marginal_from_potentials(f, potential, axis=0)
    return (cotangent * (columns - problem.b),)

  objective.defvjp(forward, backward)
  optimizer = optax.lbfgs(memory_size=20)
  value_and_grad = optax.value_and_grad_from_state(objective)

  def keep_going(carry):
    _, _, step, done = carry
    return (step < max_steps) & ~done

  def step_fn(carry):
    potential, state, step, _ = carry
    value, grad = value_and_grad(potential, state=state)
    error = jnp.sum(jnp.abs(grad))  # at `potential`, before this step's update
    updates, new_state = optimizer.update(
        grad, state, potential, value=value, grad=grad, value_fn=objective
    )
    new_potential = optax.apply_updates(potential, updates)
    # Also stop where the line search no longer moves g (float32's floor): Sinkhorn goes on.
    done = (
        (error < threshold)
        | ~jnp.isfinite(error)
        | ~jnp.all(jnp.isfinite(new_potential))
        | jnp.all(new_potential == potential)
    )
    return (
        jnp.where(done, potential, new_potential),
        new_state,
        step + jnp.where(done, 0, 1).astype(jnp.int32),
        done,
    )

  start = (g, optimizer.init(g), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
  g, _, steps, _ = jax.lax.while_loop(keep_going, step_fn, start)
  return g, steps


def _solve(
    solver: sinkhorn.Sinkhorn,
    problem: linear_problem.LinearProblem,
    init: tuple[jax.Array, jax.Array] | None,
    threshold: float = -1.0,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(g, iterations, converged, last marginal error); converged means a finite last error
  below `threshold`, whatever ott's own flag says."""
  out = solver(problem, init=init)
  errors = out.errors  # -1 where an iteration was not run (or not checked)
  last = jnp.max(jnp.where(errors >= 0, jnp.arange(errors.shape[0]), 0))
  marginal_error = errors[last]
  converged = jnp.isfinite(marginal_error) & (marginal_error >= 0) & (marginal_error < threshold)
  return out.g, jnp.asarray(out.n_iters, jnp.int32), converged, marginal_error


def _labels(ln_p: jax.Array, g: jax.Array) -> jax.Array:
  return jnp.argmax(ln_p + g[None, :], axis=1).astype(jnp.int32)
