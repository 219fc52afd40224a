"""Contender: atrepo.read_car(path).records on the pure Python path (ATREPO_PURE_PYTHON=1).

The same job as ``atrepo_records.py`` with the compiled core switched off, so one run of the
benchmark compares the two paths of atrepo as well as atrepo with its peers.
"""
import os
import runpy

os.environ["ATREPO_PURE_PYTHON"] = "1"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "atrepo_records.py"),
               run_name="__main__")
