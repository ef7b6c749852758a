"""The book's scripts (execute, exercises, grade, setup_cell, vendor). Each runs as ``python tools/NAME.py``; tests,
benchmarks and the scripts themselves import one another as ``tools.NAME`` with the repository root on sys.path."""
