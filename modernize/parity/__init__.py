"""Layer-by-layer parity of the PyTorch port against the C++ engine (``alexnet-replay parity``).

>>> report = run_parity("cifar-18pct", None, minibatch=4, steps=3)
>>> report.passed, report.first_divergence        # True, None
>>> write_report(report, "parity-out")            # report.json, report.md, report.html

One job per module (docs/parity.md has the whole story):

* ``tolerances``: the tolerance table per layer class, with the reason for each row,
  and which row a comparison uses;
* ``metrics``: one comparison as a :class:`Metric` (the engine's one-pass metric and
  its numpy reference);
* ``runner``: :func:`run_parity`: the same weights, data and masks on both sides, the
  isolated and end-to-end comparisons per layer, the training steps, fault injection;
* ``report``: :class:`ParityReport`, its JSON, Markdown and HTML files and the CLI's
  summary.

Tolerances are ``atol + rtol*|expected|`` with ``atol = scale * max|expected|`` (see TOL).
"""

from __future__ import annotations

import json

from .metrics import Metric, measure, measure_numpy, measure_rerouted
from .report import (FORMAT, QUANTITY_ORDER, VERSION, ParityReport, report_html, report_markdown, summary_text,
                     write_report)
from .runner import (FAULTS, classes_of, engine_image, takes_fused_gradient, gate_flips, isolated_backward, make_batch,
                     rescale_weights, run_parity)
from .tolerances import (CUDA_TOL, EXACT, REL_FLOOR, TOL, backward_kind, forward_kind, softmax_tol,
                         tolerances)


def cli_parity(args) -> int:
    """``alexnet-replay parity``: 0 when every comparison is within tolerance, 1 otherwise.

    It calls this package's ``run_parity`` (not runner's by name), so that a test can
    replace ``parity.run_parity``."""
    report = run_parity(args.layers, args.params, image_size=args.image_size, minibatch=args.minibatch,
                        steps=args.steps, seed=getattr(args, "seed", 0), device=args.device,
                        lenient=getattr(args, "lenient", False))
    if args.report:
        write_report(report, args.report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(summary_text(report))
        if args.report:
            print(f"report written to {args.report}")
    return 0 if report.passed else 1


__all__ = [
    "run_parity", "cli_parity", "write_report", "summary_text", "report_markdown", "report_html", "ParityReport",
    "Metric", "measure", "measure_numpy", "measure_rerouted", "TOL", "CUDA_TOL", "EXACT", "REL_FLOOR",
    "tolerances", "forward_kind", "backward_kind", "softmax_tol", "FAULTS", "FORMAT", "VERSION", "QUANTITY_ORDER",
    "classes_of", "engine_image", "takes_fused_gradient", "gate_flips", "isolated_backward", "make_batch",
    "rescale_weights",
]
