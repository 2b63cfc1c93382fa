#!/usr/bin/env bash
# Runs the tests that compare results of different code paths under XLA CPU
# flags that change fusion, vectorisation and floating-point reassociation,
# as another CPU kind or jaxlib release might. A tolerance that fails here is
# too tight for tests/numerics.py's rule (see its docstring).
#
#   bash scripts/check_tolerances.sh [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
tests=(tests/test_reference.py tests/test_equivalences.py tests/test_edge_cases.py
       tests/test_fisher.py tests/test_partial_grad.py tests/test_composition.py
       tests/test_masks.py tests/test_analysis_convergence.py
       tests/test_analysis_gradient_ratio.py tests/test_analysis_landscape.py
       tests/test_analysis_hessian.py)
flag_sets=(
  "--xla_cpu_max_isa=SSE4_2"
  "--xla_cpu_max_isa=AVX2"
  "--xla_cpu_prefer_vector_width=512"
  "--xla_cpu_enable_fast_math=true"
  "--xla_cpu_use_fusion_emitters=false"
  "--xla_backend_optimization_level=0"
)
status=0
for flags in "${flag_sets[@]}"; do
  echo "== XLA_FLAGS=$flags"
  XLA_FLAGS="$flags" python -m pytest -q -p no:cacheprovider "${tests[@]}" "$@" \
    | tail -n 3 || status=1
done
exit $status
