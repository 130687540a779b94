"""The evaluation suite (METHOD.md section 6): metrics, truth adapters, FROC, baselines, reports.

- :mod:`.pixel`: pixel-level counts and scores over a region (pooled or per image).
- :mod:`.mc`: one-to-one MC matching (centroid distance in mm or IoU), with the pairs.
- :mod:`.clusters`: single linkage, cluster centres, circles and outlines.
- :mod:`.froc`: FROC over the score threshold, sensitivity at fixed FP rates, bootstrap CIs.
- :mod:`.truth`: mini-MIAS ``Info.txt``, INbreast XML, mask folders, CSV point lists.
- :mod:`.predictions`: the output folder of ``mcgenref segment``.
- :mod:`.engine`: pairing, scoring per image, pooling (``mcgenref evaluate``).
- :mod:`.baselines`: the white top-hat detector and the TT-GPR availability check.
- :mod:`.report`: conventions in words, the text table, JSON and FROC plots.
"""

from .config import FORMATS, EvaluationConfig
from .engine import EvaluationReport, ImageResult, evaluate, evaluate_items, evaluate_steps

__all__ = ["FORMATS", "EvaluationConfig", "EvaluationReport", "ImageResult", "evaluate", "evaluate_items", "evaluate_steps"]
