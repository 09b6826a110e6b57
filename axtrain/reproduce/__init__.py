"""``axtrain reproduce``: the paper's Figures 4 and 6-9 as cached cells, CSVs, plots and REPORT.md.

Start at :func:`axtrain.reproduce.run.reproduce` (Python) or docs/reproduce.md (command line).
"""
