"""The benchmark suite of liq_pipeline: `python bench/run.py` (see its docstring)."""
