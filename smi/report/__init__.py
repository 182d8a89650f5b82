"""Reporting: aggregation of metrics records, paper-style tables, figures and run comparison.

Follows the tables and figures of Sparse Model Inversion (Hu et al., ICML 2024): speed-up,
FLOPs and memory relative to dense inversion; quantization and knowledge-transfer accuracy.
Modules: :mod:`~smi.report.aggregate` (JSON -> ``summary.csv`` + curve tables),
:mod:`~smi.report.stats` (seed statistics, ratios to dense), :mod:`~smi.report.tables` (the
five tables, one module each), :mod:`~smi.report.render` (Markdown/LaTeX/HTML), :mod:`~smi.report.figures`
(seaborn plots), :mod:`~smi.report.grids` (image grids), :mod:`~smi.report.compare`
(cell-by-cell diff of two runs), :mod:`~smi.report.defaults` (settings the CLI shows).
"""
