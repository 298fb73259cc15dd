"""Experiments of the chapter that produce its tables: `python -m minitl.experiments.<name>`."""
