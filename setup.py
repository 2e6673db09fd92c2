# The metadata lives in setup.cfg; this shim keeps `pip install -e .` working everywhere.
from setuptools import setup

setup()
